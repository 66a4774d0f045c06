"""The projector: folds the event log into validator amounts, positions, LST balances, withdrawals.

The values it folds into (`ProjectionState`, `Changes`, the canonical order) live in `indexer.projection`.
"""

from indexer.projector.fold import fold
from indexer.projector.prorata import take_pro_rata

__all__ = ["fold", "take_pro_rata"]
