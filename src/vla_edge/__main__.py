"""``python -m vla_edge`` is the ``vla-edge`` command."""

import sys

from vla_edge.cli import main

sys.exit(main())
