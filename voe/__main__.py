"""``python -m voe``: the same as the ``voe`` console script."""

import sys

from voe.cli.main import main

sys.exit(main())
