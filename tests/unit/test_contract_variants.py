"""Telling the six contract variants apart by the getters they answer (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from indexer.chains.variants import PROBES, identify, mismatch

# SPEC section 2: which probe getters each real variant has.
HAS = {
    ("native", 1): set(),
    ("native", 2): {"lockPeriod()"},
    ("erc20", 1): {"depositToken()"},
    ("erc20", 2): {"depositToken()", "lockPeriod()"},
    ("erc721", 1): {"depositToken()", "getStakedTokens(address)"},
    ("erc721", 2): {"depositToken()", "getStakedTokens(address)", "lockPeriod()"},
}


@dataclass(frozen=True)
class Contract:
    name: str
    address: str
    kind: str
    version: int


def answers(variant: tuple[str, int]) -> dict[str, bool]:
    return {name: name in HAS[variant] for name in PROBES}


@pytest.mark.parametrize("variant", sorted(HAS))
def test_each_variant_is_identified_by_its_getters(variant):
    assert identify(answers(variant)) == variant


@pytest.mark.parametrize("deployed", sorted(HAS))
@pytest.mark.parametrize("configured", sorted(HAS))
def test_a_complaint_exactly_when_configured_and_deployed_differ(configured, deployed):
    contract = Contract("klynft", "0x" + "ab" * 20, *configured)
    complaint = mismatch(contract, "local", True, answers(deployed))
    if configured == deployed:
        assert complaint is None
    else:
        assert complaint is not None and "\n" not in complaint
        assert f"contract klynft (0x{'ab' * 20})" in complaint
        assert f"configured as {configured[0]} v{configured[1]}" in complaint
        assert f"answers as {deployed[0]} v{deployed[1]}" in complaint


def test_no_code_at_the_address_is_named():
    complaint = mismatch(Contract("klyeth", "0x" + "01" * 20, "native", 1), "local", False, answers(("native", 1)))
    assert complaint is not None and "no contract code is deployed" in complaint
