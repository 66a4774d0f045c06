"""Social delegation records: the signed message, every acceptance rule, and the event a record becomes."""

from __future__ import annotations

from functools import cache

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.decode.social import (
    Accepted,
    Reason,
    Rejected,
    apply_order,
    canonical_message,
    check_record,
    parse_tx_key,
    to_event,
)
from indexer.events import EventType

NOW = 1_700_000_000
FEED = "social"


@cache
def account(i: int = 0):
    return Account.from_key(bytes([i + 1]) * 32)


def message(staker: str, validator: str, action: str, points: int, nonce: int, issued_at: int, deadline: int) -> str:
    """The SPEC's signed text, built here independently of the code under test."""
    lines = [
        "Klyntar social delegation",
        "staker: " + staker.lower(),
        "validator: " + validator,
        "action: " + action,
        "points: " + str(points),
        "nonce: " + str(nonce),
        "issued_at: " + str(issued_at),
        "deadline: " + str(deadline),
    ]
    return "\n".join(lines)


def signed(
    key=None,
    *,
    staker: str | None = None,
    validator: str = "validator-one",
    action: str = "delegate",
    points: int = 100,
    nonce: int = 1,
    issued_at: int = NOW - 60,
    deadline: int = NOW + 3600,
) -> dict:
    """A record signed by `key` (default: the staker's own key)."""
    key = key or account(0)
    staker = staker or key.address.lower()
    text = message(staker, validator, action, points, nonce, issued_at, deadline)
    signature = Account.sign_message(encode_defunct(text=text), key.key).signature.to_0x_hex()
    return {
        "staker": staker,
        "validator": validator,
        "points": points,
        "action": action,
        "nonce": nonce,
        "issued_at": issued_at,
        "deadline": deadline,
        "signature": signature,
    }


def check(raw, seen=frozenset(), now=NOW):
    return check_record(raw, feed=FEED, now=now, seen=seen)


def reason(raw, **kw):
    verdict = check(raw, **kw)
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason


def test_canonical_message_is_the_spec_text():
    record = signed(staker=account(0).address)  # checksummed in the record, lower-case in the message
    expected = (
        f"Klyntar social delegation\nstaker: {account(0).address.lower()}\nvalidator: validator-one\n"
        f"action: delegate\npoints: 100\nnonce: 1\nissued_at: {NOW - 60}\ndeadline: {NOW + 3600}"
    )
    assert canonical_message(record) == expected
    assert not canonical_message(record).endswith("\n")


@pytest.mark.parametrize(
    ("action", "event_type"), [("delegate", EventType.SOCIAL_DELEGATE), ("undelegate", EventType.SOCIAL_UNDELEGATE)]
)
def test_valid_record_is_accepted_and_becomes_an_event(action, event_type):
    raw = signed(action=action, points=250, nonce=7, validator="val-x")
    verdict = check(raw)
    assert isinstance(verdict, Accepted)
    event = to_event(verdict, FEED, "SOCIAL")
    staker = account(0).address.lower()
    assert event.chain == FEED and event.chain_id == 0
    assert event.contract == "social:social" and event.contract_kind == "social" and event.contract_version == 1
    assert event.block_number == event.block_time == NOW - 60
    assert event.block_hash == ""
    assert event.tx_hash == f"{staker}:{7:078d}" and event.log_index == 0
    assert event.event_type == event_type
    assert (event.staker, event.pool, event.amount, event.asset) == (staker, "val-x", 250, "SOCIAL")
    assert event.counterparty is None and event.token_id is None and event.unlock_time is None
    assert parse_tx_key(event.tx_hash) == (staker, 7)


def test_forged_record_is_a_bad_signature():
    raw = signed(account(1), staker=account(0).address.lower())
    assert reason(raw) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [
        {"points": 101},
        {"validator": "validator-two"},
        {"action": "undelegate"},
        {"nonce": 2},
        {"issued_at": NOW - 59},
        {"deadline": NOW + 3601},
        {"staker": account(1).address.lower()},
    ],
)
def test_tampered_record_is_a_bad_signature(change):
    assert reason(signed() | change) == Reason.BAD_SIGNATURE


def test_invalid_curve_signature_is_a_bad_signature():
    raw = signed()
    raw["signature"] = "0x" + "00" * 64 + "1b"  # r = s = 0: recovers to no key
    assert reason(raw) == Reason.BAD_SIGNATURE
    raw["signature"] = raw["signature"][:-2] + "05"  # v neither 27/28 nor 0/1
    assert reason(raw) == Reason.BAD_SIGNATURE


def test_replayed_nonce_is_rejected_and_a_rejected_record_does_not_use_its_nonce():
    staker = account(0).address.lower()
    assert reason(signed(nonce=5), seen={(staker, 5)}) == Reason.REPLAYED_NONCE
    # A replay under a different key's nonce space is fine: the key is (staker, nonce).
    assert isinstance(check(signed(account(1), nonce=5), seen={(staker, 5)}), Accepted)
    # Rejected for expiry: nothing is "seen", so the nonce is still free for a good record.
    seen: set[tuple[str, int]] = set()
    assert reason(signed(nonce=9, deadline=NOW - 1, issued_at=NOW - 100), seen=seen) == Reason.EXPIRED
    verdict = check(signed(nonce=9), seen=seen)
    assert isinstance(verdict, Accepted) and verdict.record.key == (staker, 9)


def test_nonces_need_not_increase():
    staker = account(0).address.lower()
    assert isinstance(check(signed(nonce=3), seen={(staker, 10)}), Accepted)


def test_time_rules():
    assert reason(signed(issued_at=NOW - 1000, deadline=NOW - 1)) == Reason.EXPIRED
    assert isinstance(check(signed(issued_at=NOW - 1000, deadline=NOW)), Accepted)  # deadline not yet passed
    assert reason(signed(issued_at=NOW + 301, deadline=NOW + 5000)) == Reason.ISSUED_IN_FUTURE
    assert isinstance(check(signed(issued_at=NOW + 300, deadline=NOW + 5000)), Accepted)
    assert reason(signed(issued_at=NOW - 10, deadline=NOW - 11)) == Reason.ISSUED_AFTER_DEADLINE
    assert isinstance(check(signed(issued_at=NOW - 10, deadline=NOW - 10), now=NOW - 10), Accepted)


def _without(field):
    raw = signed()
    del raw[field]
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([signed()], id="not-an-object-list"),
        pytest.param("record", id="not-an-object-string"),
        pytest.param(None, id="null"),
        *(pytest.param(_without(f), id=f"missing-{f}") for f in ("staker", "points", "nonce", "signature")),
        pytest.param(signed() | {"points": -1}, id="negative-points"),
        pytest.param(signed() | {"points": "100"}, id="points-as-string"),
        pytest.param(signed() | {"points": 1.5}, id="points-float"),
        pytest.param(signed() | {"points": True}, id="points-bool"),
        pytest.param(signed() | {"points": 2**256}, id="points-over-uint256"),
        pytest.param(signed() | {"nonce": -1}, id="negative-nonce"),
        pytest.param(signed() | {"issued_at": "now"}, id="issued-at-string"),
        pytest.param(signed() | {"staker": "0x1234"}, id="short-address"),
        pytest.param(signed() | {"staker": "0x" + "g" * 40}, id="non-hex-address"),
        pytest.param(signed() | {"staker": "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"}, id="tron-address"),
        pytest.param(signed() | {"action": "steal"}, id="unknown-action"),
        pytest.param(signed() | {"action": "Delegate"}, id="action-case"),
        pytest.param(signed() | {"validator": ""}, id="empty-validator"),
        pytest.param(signed() | {"validator": "a\ndeadline: 1"}, id="validator-newline"),
        pytest.param(signed() | {"validator": 5}, id="validator-number"),
        pytest.param(signed() | {"signature": "0x" + "ab" * 64}, id="short-signature"),
        pytest.param(signed() | {"signature": "0x" + "ab" * 66}, id="long-signature"),
        pytest.param(signed() | {"signature": "ab" * 65}, id="signature-no-0x"),
        pytest.param(signed() | {"signature": "0x" + "zz" * 65}, id="signature-not-hex"),
        pytest.param(signed() | {"signature": "0x" + "a" * 129}, id="signature-odd-length"),
    ],
)
def test_malformed_records(raw):
    assert reason(raw) == Reason.MALFORMED


def test_addresses_compare_case_insensitively():
    key = account(2)
    checksummed = signed(key, staker=key.address, nonce=4)
    assert checksummed["staker"] != checksummed["staker"].lower()
    verdict = check(checksummed)
    assert isinstance(verdict, Accepted) and verdict.record.staker == key.address.lower()
    # The same nonce written with the other case is the same key.
    assert reason(signed(key, staker=key.address.upper().replace("0X", "0x"), nonce=4),
                  seen={verdict.record.key}) == Reason.REPLAYED_NONCE  # fmt: skip
    assert to_event(verdict, FEED, "SOCIAL").staker == key.address.lower()


def test_extra_fields_are_ignored():
    assert isinstance(check(signed() | {"comment": "hello"}), Accepted)


def test_apply_order_is_issued_at_then_nonce():
    records = [
        signed(nonce=10, issued_at=NOW - 5),
        signed(nonce=2, issued_at=NOW - 5),
        signed(nonce=1, issued_at=NOW - 1),
        signed(nonce=11, issued_at=NOW - 9),
    ]
    events = [to_event(check(r), FEED, "SOCIAL") for r in records]
    ordered = sorted(events, key=apply_order)
    assert [(e.block_time, parse_tx_key(e.tx_hash)[1]) for e in ordered] == [
        (NOW - 9, 11),
        (NOW - 5, 2),
        (NOW - 5, 10),
        (NOW - 1, 1),
    ]
    # Same issued_at, one staker: the tx hash alone already sorts by nonce (fixed-width digits).
    same_time = [e for e in events if e.block_time == NOW - 5]
    assert sorted(same_time, key=lambda e: e.tx_hash) == sorted(same_time, key=apply_order)


@settings(max_examples=40, deadline=None)
@given(
    points=st.integers(min_value=0, max_value=2**256 - 1),
    nonce=st.integers(min_value=0, max_value=10**78 - 1),
    action=st.sampled_from(["delegate", "undelegate"]),
    validator=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), min_size=1
    ),
    age=st.integers(min_value=-300, max_value=10**6),
    lifetime=st.integers(min_value=0, max_value=10**6),
    who=st.integers(min_value=0, max_value=3),
)
def test_any_valid_record_round_trips_to_an_event(points, nonce, action, validator, age, lifetime, who):
    issued_at = NOW - age
    deadline = max(issued_at, NOW) + lifetime
    raw = signed(account(who), points=points, nonce=nonce, action=action, validator=validator,
                 issued_at=issued_at, deadline=deadline)  # fmt: skip
    verdict = check(raw)
    assert isinstance(verdict, Accepted), verdict
    event = to_event(verdict, FEED, "SOCIAL")
    assert event.amount == points and type(event.amount) is int
    assert event.pool == validator
    assert event.block_time == issued_at
    assert parse_tx_key(event.tx_hash) == (account(who).address.lower(), nonce)
    assert event.event_type == (EventType.SOCIAL_DELEGATE if action == "delegate" else EventType.SOCIAL_UNDELEGATE)
    assert canonical_message(raw) == message(raw["staker"], validator, action, points, nonce, issued_at, deadline)
