"""A real local EVM chain for tests, the demo and benchmarks: anvil, the project's contracts, traffic."""

from indexer.localchain.anvil import Anvil, anvil_binary
from indexer.localchain.deploy import Deployment, deploy_all
from indexer.localchain.traffic import Driver, TransactionReverted, realistic_mix

__all__ = [
    "Anvil",
    "Deployment",
    "Driver",
    "TransactionReverted",
    "anvil_binary",
    "deploy_all",
    "realistic_mix",
]
