"""Which of the six contract variants an address holds: a configuration check made at start.

The real contracts tell themselves apart by the getters they have (SPEC section 2): only ERC-721
has `getStakedTokens(address)`; ERC-20 (and ERC-721) kinds name their `depositToken()`, native
ones do not; only v2 has `lockPeriod()`. A contract configured as another variant than the code
at its address would be decoded wrongly from its first log, so `run` refuses to start instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from indexer.chains.rpc import JsonRpcError, RpcClient
from indexer.decode.signatures import selector
from indexer.errors import ConfigError, RpcError

log = structlog.get_logger(__name__)

PROBES = {
    "getStakedTokens(address)": selector("getStakedTokens(address)") + "00" * 32,  # the zero address, ABI-encoded
    "depositToken()": selector("depositToken()"),
    "lockPeriod()": selector("lockPeriod()"),
}


def identify(answers: Mapping[str, bool]) -> tuple[str, int]:
    """(kind, version) of a multistaking contract from which probe getters it answers (pure)."""
    if answers["getStakedTokens(address)"]:
        kind = "erc721"
    elif answers["depositToken()"]:
        kind = "erc20"
    else:
        kind = "native"
    return kind, 2 if answers["lockPeriod()"] else 1


def mismatch(contract, chain: str, has_code: bool, answers: Mapping[str, bool]) -> str | None:
    """The one-line complaint when the configured kind/version is not what the address holds, else None (pure)."""
    where = f"chain {chain}: contract {contract.name} ({contract.address})"
    configured = f"{contract.kind} v{contract.version}"
    if not has_code:
        return f"{where} is configured as {configured}, but no contract code is deployed at that address"
    found = identify(answers)
    if found == (contract.kind, contract.version):
        return None
    answered = ", ".join(name for name, ok in answers.items() if ok) or "none of the probe getters"
    return (
        f"{where} is configured as {configured}, but the address answers as {found[0]} v{found[1]} "
        f"(it answers {answered}): fix its `kind`/`version` in the config"
    )


async def check_variants(chains) -> None:
    """Raise ConfigError naming the first EVM contract whose configured variant differs from the deployed code.

    A chain whose nodes cannot be reached now is skipped with a warning: the watcher retries it,
    and the check is made again at the next start.
    """
    for chain in chains:
        if chain.kind != "evm" or not chain.contracts:
            continue
        rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds, attempts=2)
        try:
            calls = []
            for contract in chain.contracts:
                calls.append(("eth_getCode", [contract.address, "latest"]))
                calls += [("eth_call", [{"to": contract.address, "data": data}, "latest"]) for data in PROBES.values()]
            try:
                results = await rpc.batch(calls)
            except RpcError as exc:
                log.warning("contract_variants_not_checked", chain=chain.name, error=str(exc))
                continue
            step = 1 + len(PROBES)
            for i, contract in enumerate(chain.contracts):
                code, *probes = results[i * step : (i + 1) * step]
                if isinstance(code, JsonRpcError):
                    log.warning(
                        "contract_variant_not_checked", chain=chain.name, contract=contract.name, error=str(code)
                    )
                    continue
                has_code = isinstance(code, str) and code not in ("0x", "0x0", "")
                answers = {
                    name: isinstance(result, str) and len(result) > 2 and not isinstance(result, JsonRpcError)
                    for name, result in zip(PROBES, probes, strict=True)
                }
                complaint = mismatch(contract, chain.name, has_code, answers)
                if complaint is not None:
                    raise ConfigError(complaint)
        finally:
            await rpc.close()
