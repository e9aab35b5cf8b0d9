"""``python -m nnresilience`` runs the ``nnres`` CLI."""

import sys

from nnresilience.cli import main

sys.exit(main())
