"""Validator points: each validator's staked amount of an asset in whole tokens times the asset's weight (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from indexer.errors import ConfigError
from indexer.projector.state import ProjectionState, ValidatorKey

# Wide enough for a uint256 amount times any configured weight; a result that would round raises instead.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, Overflow])


def validator_points(
    state: ProjectionState, weights: Mapping[str, tuple[int, Decimal | int]]
) -> dict[ValidatorKey, Decimal]:
    """Points per (validator, asset) = amount / 10**decimals * weight, exact; `weights`: asset -> (decimals, weight)."""
    points: dict[ValidatorKey, Decimal] = {}
    for (validator, asset), amount in state.validators.items():
        if asset not in weights:
            raise ConfigError(f"asset {asset} (validator {validator}) has no configured decimals and weight")
        decimals, weight = weights[asset]
        if isinstance(weight, float):
            raise TypeError(f"weight of {asset} is a float; give a Decimal or an int")
        whole = Decimal(amount).scaleb(-decimals, _EXACT)
        points[(validator, asset)] = _EXACT.multiply(whole, Decimal(weight))
    return points
