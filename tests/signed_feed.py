"""Signed social-delegation records, as a feed publisher makes them (SPEC section 2), and JSON Lines feeds."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct


def signed(key, *, forger=None, validator="validator-one", action="delegate", points=100, nonce=1,
           issued_at: int, deadline: int) -> dict:  # fmt: skip
    """A record for `key`'s address, signed by `forger` if given (else by the staker)."""
    staker = key.address.lower()
    text = "\n".join(
        [
            "Klyntar social delegation",
            f"staker: {staker}",
            f"validator: {validator}",
            f"action: {action}",
            f"points: {points}",
            f"nonce: {nonce}",
            f"issued_at: {issued_at}",
            f"deadline: {deadline}",
        ]
    )
    signature = Account.sign_message(encode_defunct(text=text), (forger or key).key).signature.to_0x_hex()
    return {"staker": key.address, "validator": validator, "points": points, "action": action, "nonce": nonce,
            "issued_at": issued_at, "deadline": deadline, "signature": signature}  # fmt: skip


def write_jsonl(path: Path, records: list, extra_lines: tuple[str, ...] = ()) -> None:
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
