"""`python sink.py`: the original's command for the sink; the same as `voe sink`."""

import sys

from voe.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sink", *sys.argv[1:]]))
