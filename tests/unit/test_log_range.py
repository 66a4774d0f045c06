"""The adaptive eth_getLogs range (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.chains.log_range import LogRange, is_range_too_large, named_limit, suggested_size

PROVIDER_MESSAGES = [
    "query returned more than 10000 results. Try with this block range [0x10, 0x2f].",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on "
    "the response size, or you can request any block range with a cap of 10K logs in the response. Based on your "
    "parameters, this block range should work: [0x10, 0x1f]",
    "eth_getLogs is limited to a 10,000 range",
    "exceed maximum block range: 5000",
    "block range is too wide",
    "query timeout exceeded",
]


def test_common_provider_messages_are_recognised():
    assert all(is_range_too_large(m) for m in PROVIDER_MESSAGES)
    assert not is_range_too_large("execution reverted")
    assert not is_range_too_large("invalid argument 0: hex string without 0x prefix")


def test_suggested_range_and_named_limits_are_parsed():
    assert suggested_size(PROVIDER_MESSAGES[0], 0x10) == 0x20
    assert suggested_size(PROVIDER_MESSAGES[1], 0x10) == 0x10
    assert suggested_size(PROVIDER_MESSAGES[0], 0x11) is None  # a suggestion for another start is ignored
    assert named_limit(PROVIDER_MESSAGES[2]) == 10_000
    assert named_limit(PROVIDER_MESSAGES[3]) == 5000


def test_range_scales_toward_the_target_and_never_past_ceiling():
    r = LogRange(size=1000, ceiling=5000, target_logs=100)
    assert r.grown(0).size == 4000  # empty: grow fast (x4)
    assert r.grown(0).grown(0).size == 5000  # but never past the ceiling
    assert r.grown(25).size == 2000  # a quarter of target: x2 at most, logs may cluster
    assert r.grown(100).size == 1000 and r.grown(200).size == 1000  # near target: unchanged
    assert r.grown(1000).size == 125  # ten times the target: /8 at most
    assert r.grown(400).size == 250  # four times: scaled to the target
    assert LogRange(size=1, ceiling=10, target_logs=10).grown(10**6).size == 1


def test_refusal_uses_suggestion_then_halves_and_learns_named_ceiling():
    r = LogRange(size=1000, ceiling=100_000, target_logs=10_000)
    assert r.refused(PROVIDER_MESSAGES[0], 0x10).size == 0x20
    assert r.refused("block range is too wide", 0).size == 500
    limited = LogRange(size=20_000, ceiling=100_000, target_logs=10).refused(PROVIDER_MESSAGES[3], 0)
    assert (limited.size, limited.ceiling) == (5000, 5000)


@given(
    size=st.integers(1, 10**6),
    ceiling=st.integers(1, 10**6),
    logs=st.integers(0, 10**6),
    message=st.sampled_from(PROVIDER_MESSAGES),
)
def test_range_stays_between_one_and_ceiling(size, ceiling, logs, message):
    r = LogRange(size=min(size, ceiling), ceiling=ceiling, target_logs=1000)
    for nxt in (r.grown(logs), r.refused(message, 0)):
        assert 1 <= nxt.size <= nxt.ceiling <= ceiling
