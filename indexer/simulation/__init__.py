"""Deterministic simulation of the indexer against a simulated world (issue 16).

The real follow loop, sources, RPC client, store and projector run against a
simulated EVM chain (`world`: the six contract variants, reorgs, the rows the
indexer must end up storing) served by simulated JSON-RPC nodes (`node`: rate
limits, timeouts, truncated answers, range limits, lagging and stale nodes).
Everything is pure Python and driven by `random.Random` instances, so one seed
reproduces a whole run bit for bit.
"""
