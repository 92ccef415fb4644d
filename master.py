"""`python master.py`: the original's command for the master; the same as `voe master`."""

import sys

from voe.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["master", *sys.argv[1:]]))
