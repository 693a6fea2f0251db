"""``python -m zoo COMMAND ...`` is ``zoo COMMAND ...`` (``torchrun -m zoo train ...`` runs training this way)."""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
