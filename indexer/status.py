"""`indexer status`: the per-chain table of v_indexer_status."""

from __future__ import annotations

from indexer.service import open_database


async def print_status(config) -> int:
    """Print one line per chain; returns the exit code."""
    async with open_database(config) as pool:
        rows = await pool.fetch("SELECT * FROM v_indexer_status ORDER BY chain")
    header = ("chain", "head", "indexed", "confirmed", "lag", "unresolved_pools", "updated_at")
    lines = [header] + [
        (
            r["chain"],
            str(r["head_block"]),
            str(r["indexed_block"]),
            str(r["confirmed_block"]),
            str(r["lag_blocks"]),
            str(r["unresolved_pools"]),
            r["updated_at"].isoformat(timespec="seconds"),
        )
        for r in rows
    ]
    configured = {c.name for c in config.chains}
    lines += [
        (name, "-", "-", "-", "-", "-", "never indexed") for name in sorted(configured - {r["chain"] for r in rows})
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0
