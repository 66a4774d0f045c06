import signal
import sys

# A SIGTERM before `run` takes signals over (its imports alone take half a second) finds nothing written: a
# clean stop. `cli.main` keeps this for `run` only.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

from indexer.cli import main  # noqa: E402

sys.exit(main())
