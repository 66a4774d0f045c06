"""`indexer status`: the per-chain table of v_indexer_status (read by `indexer.store.health`)."""

from __future__ import annotations

from indexer.service import open_database
from indexer.store import health


def _cell(value) -> str:
    return "-" if value is None else str(value)


async def print_status(config) -> int:
    """Print one line per configured chain (and any other the database knows); exit 1 if one has failed."""
    async with open_database(config) as pool:
        rows = {r["chain"]: r for r in await health.chain_status(pool)}
    header = ("chain", "state", "head", "indexed", "confirmed", "lag", "unresolved_pools", "updated_at", "error")
    lines = [header]
    for name in sorted({c.name for c in config.chains} | rows.keys()):
        r = rows.get(name)
        if r is None:
            lines.append((name, "-", "-", "-", "-", "-", "-", "never indexed", "-"))
            continue
        updated = r["updated_at"].isoformat(timespec="seconds") if r["updated_at"] else "-"
        lines.append((name, r["state"], _cell(r["head_block"]), _cell(r["indexed_block"]), _cell(r["confirmed_block"]),
                      _cell(r["lag_blocks"]), _cell(r["unresolved_pools"]), updated, _cell(r["error"])))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 1 if any(r["state"] == "failed" for r in rows.values()) else 0
