"""`python -m indexer.simulation`: see `indexer.simulation.cli`."""

import sys

from indexer.simulation.cli import main

sys.exit(main())
