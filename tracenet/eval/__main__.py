"""``python -m tracenet.eval ...``: the ``tracenet eval`` command without the package CLI."""

from __future__ import annotations

import argparse
import sys

from tracenet.eval.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the evaluation."""
    parser = argparse.ArgumentParser(prog="python -m tracenet.eval", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
