"""``python -m vla_edge.core serve|env ...``: the same as ``vla-edge core ...``."""

from __future__ import annotations

import sys


def main() -> int:
    from vla_edge.core.cli import main as core_main

    return core_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
