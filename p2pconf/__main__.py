"""`python -m p2pconf` runs the `p2pconf` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
