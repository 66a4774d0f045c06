"""The indexer's error tree: what went wrong, and what the operator can do about it.

Every error the CLI reports is one of these; its message is the one line printed.
"""


class IndexerError(Exception):
    """Base of every error the indexer reports to the operator."""


class ConfigError(IndexerError):
    """The configuration file is wrong: fix the named field and start again."""


class DatabaseError(IndexerError):
    """The database cannot be reached or used: check `database.dsn` and the server."""


class RetryableError(IndexerError):
    """A transient failure (RPC timeout, rate limit, bad answer): the watcher backs off and retries."""


class RpcError(RetryableError):
    """Every RPC URL of a chain failed for now: check the node URLs and their health."""


class ReorgDetected(RetryableError):
    """The chain reorganized under the indexer: it rewinds to the common ancestor and indexes the new branch."""


class FatalError(IndexerError):
    """The indexer cannot continue safely (broken invariant, reorg past finality): investigate before restarting."""


class DecodeError(FatalError):
    """A log from a configured contract does not match its declared ABI: check the contract's kind and version."""


class ReorgTooDeep(FatalError):
    """A reorg reached below the retained block hashes: the event log may hold orphaned events; re-index the chain."""


class ReorgBelowClosedEpoch(FatalError):
    """A reorg reached into a closed (final) reward epoch: its allocations may be wrong; investigate before resuming."""
