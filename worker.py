"""`python worker.py`: the original's command for the worker; the same as `voe worker`."""

import sys

from voe.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
