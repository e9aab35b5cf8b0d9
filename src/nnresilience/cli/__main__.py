import sys

from nnresilience.cli import main

sys.exit(main())
