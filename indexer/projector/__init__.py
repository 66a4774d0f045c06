"""The projector: folds the event log into validator amounts and points, positions, LST balances, withdrawals."""

from indexer.projector.fold import fold
from indexer.projector.points import validator_points
from indexer.projector.prorata import take_pro_rata
from indexer.projector.state import (
    EMPTY,
    ZERO_ADDRESS,
    Changes,
    Pending,
    ProjectionError,
    ProjectionState,
    canonical_order,
    pool_key,
)

__all__ = [
    "EMPTY",
    "ZERO_ADDRESS",
    "Changes",
    "Pending",
    "ProjectionError",
    "ProjectionState",
    "canonical_order",
    "fold",
    "pool_key",
    "take_pro_rata",
    "validator_points",
]
