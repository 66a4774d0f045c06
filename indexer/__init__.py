"""Multistaking indexer: a reorg-safe Postgres event log of Klyntar multistaking contracts."""

__version__ = "0.1.0"
