"""``python -m tracenet.train ...`` (also works under ``torchrun ... -m tracenet.train``)."""

import sys

from tracenet.train.command import main

if __name__ == "__main__":
    sys.exit(main())
