"""Social value points: signed off-chain delegation records, checked and turned into events (pure, no IO).

A record is a JSON object signed by its staker (EIP-191 personal_sign) over
`canonical_message`. `check_record` decides whether it is accepted or rejected
with a reason; `judge` does it for a whole read of a feed (re-reads of stored
records and items judged for good skipped); `to_event` turns an accepted record
into a row of the event log, keyed by (feed name, staker, nonce).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping, Set
from enum import StrEnum
from typing import Any, NamedTuple

from eth_account import Account
from eth_account.messages import encode_defunct

from indexer.events import Event, EventType

MESSAGE_TITLE = "Klyntar social delegation"
MAX_FUTURE_SECONDS = 300  # issued_at may be at most this far ahead of the reader's clock
NONCE_DIGITS = 78  # nonces are zero-padded in the event's tx hash so that text order is nonce order
MAX_NONCE = 10**NONCE_DIGITS - 1
MAX_POINTS = 2**256 - 1  # an amount is NUMERIC(78,0); points are uint256 like every other amount
MAX_TIME = 2**40  # unix seconds (year ~36800): anything larger is not a time Postgres should be asked to store
SIGNATURE_BYTES = 65

ACTIONS: Mapping[str, EventType] = {
    "delegate": EventType.SOCIAL_DELEGATE,
    "undelegate": EventType.SOCIAL_UNDELEGATE,
}
_ACTION_OF = {v: k for k, v in ACTIONS.items()}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]*")
_INT_FIELDS = ("points", "nonce", "issued_at", "deadline")
_FIELDS = ("staker", "validator", "points", "action", "nonce", "issued_at", "deadline", "signature")


class Reason(StrEnum):
    """Why a record was rejected (log field and metric label)."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED_NONCE = "replayed_nonce"
    EXPIRED = "expired"
    ISSUED_IN_FUTURE = "issued_in_future"
    ISSUED_AFTER_DEADLINE = "issued_after_deadline"


class Record(NamedTuple):
    """A well-formed delegation record; `staker` is lower-case."""

    staker: str
    validator: str
    points: int
    action: str  # delegate | undelegate
    nonce: int
    issued_at: int
    deadline: int
    signature: bytes

    @property
    def key(self) -> tuple[str, int]:
        """What a nonce is unique for within one feed: (staker, nonce)."""
        return (self.staker, self.nonce)


class Accepted(NamedTuple):
    record: Record


class Rejected(NamedTuple):
    reason: Reason
    detail: str
    record: Record | None = None  # the parsed record, when it was well-formed


def canonical_message(record: Record | Mapping[str, Any]) -> str:
    """The text a staker signs for `record` (a Record or a record's JSON object)."""
    get = record._asdict().__getitem__ if isinstance(record, Record) else record.__getitem__
    return "\n".join(
        (
            MESSAGE_TITLE,
            f"staker: {str(get('staker')).lower()}",
            f"validator: {get('validator')}",
            f"action: {get('action')}",
            f"points: {int(get('points'))}",
            f"nonce: {int(get('nonce'))}",
            f"issued_at: {int(get('issued_at'))}",
            f"deadline: {int(get('deadline'))}",
        )
    )


def parse_record(raw: object) -> Record | Rejected:
    """The record in a decoded JSON value, or Rejected(malformed) saying what is wrong with it.

    Fields the format does not name are ignored: the signature does not cover them.
    """
    if not isinstance(raw, Mapping):
        return Rejected(Reason.MALFORMED, f"not a JSON object but {type(raw).__name__}")
    missing = [f for f in _FIELDS if f not in raw]
    if missing:
        return Rejected(Reason.MALFORMED, f"missing field(s): {', '.join(missing)}")
    staker, validator, action, signature = raw["staker"], raw["validator"], raw["action"], raw["signature"]
    if not isinstance(staker, str) or not _ADDRESS.fullmatch(staker):
        return Rejected(Reason.MALFORMED, "staker is not a 0x address")
    if not isinstance(validator, str) or not validator or _has_control(validator):
        return Rejected(Reason.MALFORMED, "validator is not a non-empty one-line id")
    if not isinstance(action, str) or action not in ACTIONS:
        return Rejected(Reason.MALFORMED, "action is neither delegate nor undelegate")
    for name in _INT_FIELDS:
        value = raw[name]
        if not isinstance(value, int) or isinstance(value, bool):
            return Rejected(Reason.MALFORMED, f"{name} is not an integer")
        if value < 0:
            return Rejected(Reason.MALFORMED, f"{name} is negative")
    if raw["points"] > MAX_POINTS:
        return Rejected(Reason.MALFORMED, "points exceed uint256")
    if raw["nonce"] > MAX_NONCE:
        return Rejected(Reason.MALFORMED, f"nonce has more than {NONCE_DIGITS} digits")
    if raw["issued_at"] > MAX_TIME or raw["deadline"] > MAX_TIME:
        return Rejected(Reason.MALFORMED, "issued_at or deadline is not a plausible unix time")
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature) or len(signature) % 2:
        return Rejected(Reason.MALFORMED, "signature is not 0x hex")
    sig = bytes.fromhex(signature[2:])
    if len(sig) != SIGNATURE_BYTES:
        return Rejected(Reason.MALFORMED, f"signature is {len(sig)} bytes, not {SIGNATURE_BYTES}")
    return Record(
        staker=staker.lower(),
        validator=validator,
        points=raw["points"],
        action=action,
        nonce=raw["nonce"],
        issued_at=raw["issued_at"],
        deadline=raw["deadline"],
        signature=sig,
    )


def _has_control(text: str) -> bool:
    """Whether `text` holds a control character (a newline would let one message read as another)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def signer(record: Record) -> str | None:
    """The lower-case address that signed `record`'s canonical message, or None if no key did."""
    try:
        address = Account.recover_message(encode_defunct(text=canonical_message(record)), signature=record.signature)
    except Exception:  # eth-keys raises several types for out-of-range r, s or v
        return None
    return address.lower()


def check_record(raw: object, *, feed: str, now: int, seen: Collection[tuple[str, int]]) -> Accepted | Rejected:
    """Accept or reject one record read from feed `feed` at unix time `now`.

    `seen` holds the (lower-case staker, nonce) keys already accepted from this
    feed. Checks run in this order, the first failure naming the reason:
    malformed, bad_signature, replayed_nonce, issued_after_deadline,
    issued_in_future, expired. Rejection uses up nothing.
    """
    parsed = parse_record(raw)
    if isinstance(parsed, Rejected):
        return parsed
    record = parsed
    recovered = signer(record)
    if recovered != record.staker:
        return Rejected(Reason.BAD_SIGNATURE, f"signature recovers to {recovered}, not the staker", record)
    if record.key in seen:
        return Rejected(Reason.REPLAYED_NONCE, f"nonce {record.nonce} already used on feed {feed}", record)
    if record.issued_at > record.deadline:
        return Rejected(
            Reason.ISSUED_AFTER_DEADLINE, f"issued_at {record.issued_at} > deadline {record.deadline}", record
        )
    if record.issued_at > now + MAX_FUTURE_SECONDS:
        return Rejected(
            Reason.ISSUED_IN_FUTURE,
            f"issued_at {record.issued_at} is {record.issued_at - now} s ahead (max {MAX_FUTURE_SECONDS})",
            record,
        )
    if record.deadline < now:
        return Rejected(Reason.EXPIRED, f"deadline {record.deadline} passed before {now}", record)
    return Accepted(record)


def tx_key(staker: str, nonce: int) -> str:
    """The event's tx hash for (staker, nonce): unique per feed, ordered by nonce for one staker."""
    return f"{staker.lower()}:{nonce:0{NONCE_DIGITS}d}"


def parse_tx_key(tx_hash: str) -> tuple[str, int]:
    """(staker, nonce) back from a social event's tx hash."""
    staker, _, nonce = tx_hash.rpartition(":")
    return staker, int(nonce)


def to_event(accepted: Accepted | Record, feed: str, asset: str) -> Event:
    """The event-log row of an accepted record: time and block number are its `issued_at`."""
    record = accepted.record if isinstance(accepted, Accepted) else accepted
    return Event(
        chain=feed,
        chain_id=0,
        contract=f"social:{feed}",
        contract_kind="social",
        contract_version=1,
        block_number=record.issued_at,
        block_hash="",
        block_time=record.issued_at,
        tx_hash=tx_key(record.staker, record.nonce),
        log_index=0,
        event_type=ACTIONS[record.action],
        asset=asset,
        staker=record.staker,
        pool=record.validator,
        amount=record.points,
    )


def apply_order(event: Event) -> tuple[int, int, str]:
    """The order social events apply in: (issued_at, nonce), then staker for a total order."""
    staker, nonce = parse_tx_key(event.tx_hash)
    return (event.block_time, nonce, staker)


def content(event: Event) -> tuple[str | None, int | None, str, int]:
    """What a stored social event says, to tell a re-read of it from a different record with its nonce."""
    return (event.pool, event.amount, _ACTION_OF[EventType(event.event_type)], event.block_time)


def record_content(record: Record) -> tuple[str | None, int | None, str, int]:
    """`content` of the event `record` would become."""
    return (record.validator, record.points, record.action, record.issued_at)


# -- one read of a feed ----------------------------------------------------------------------------------------------

# Verdicts that time can change are not remembered: the record is judged again on the next read.
TRANSIENT = frozenset({Reason.ISSUED_IN_FUTURE})
Content = tuple[str | None, int | None, str, int]


class BadLine(NamedTuple):
    """A JSON Lines line that is not JSON."""

    line: int
    error: str


def parse_jsonl(text: str) -> list[object]:
    """The items of a JSON Lines text: blank lines skipped, a line that is not JSON kept as a `BadLine`."""
    items: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            items.append(BadLine(number, f"{exc.__class__.__name__}: {exc}"))
    return items


def fingerprint(item: object) -> str:
    """A stable digest of one feed item (its JSON, keys sorted)."""
    if isinstance(item, BadLine):
        text = f"badline:{item.line}:{item.error}"
    else:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Judgement(NamedTuple):
    """What one read of a feed holds that is new: records to store, rejections to report, items judged for good."""

    accepted: list[Record]
    rejected: list[tuple[object, Rejected]]  # (the item as read, why)
    settled: set[str]  # fingerprints never to judge again (accepted, re-read, or rejected for good)


def judge(
    items: Iterable[object], *, feed: str, now: int, stored: Mapping[tuple[str, int], Content], settled: Set[str]
) -> Judgement:
    """Judge every item of one read of feed `feed` at unix time `now` (pure).

    `stored` maps the (staker, nonce) keys already in the event log to their content, so that
    re-reading a stored record is quietly skipped while a different record reusing its nonce is a
    replay; `settled` holds the fingerprints of items judged for good before.
    """
    seen: set[tuple[str, int]] = set(stored)
    reread: set[tuple[str, int]] = set()  # stored keys met again in this read
    accepted: list[Record] = []
    rejected: list[tuple[object, Rejected]] = []
    done: set[str] = set()
    for item in items:
        fp = fingerprint(item)
        if fp in settled:
            continue
        if isinstance(item, BadLine):
            verdict: Accepted | Rejected = Rejected(Reason.MALFORMED, f"line {item.line} is not JSON: {item.error}")
        else:
            parsed = parse_record(item)
            if isinstance(parsed, Record) and parsed.key in stored and parsed.key not in reread:
                if stored[parsed.key] == record_content(parsed):
                    # A re-read of a stored record (after a restart, or an identical copy): nothing new.
                    reread.add(parsed.key)
                    done.add(fp)
                    continue
            verdict = check_record(item, feed=feed, now=now, seen=seen)
        if isinstance(verdict, Accepted):
            accepted.append(verdict.record)
            seen.add(verdict.record.key)
            reread.add(verdict.record.key)
        else:
            rejected.append((item, verdict))
        if not (isinstance(verdict, Rejected) and verdict.reason in TRANSIENT):
            done.add(fp)
    return Judgement(accepted, rejected, done)
