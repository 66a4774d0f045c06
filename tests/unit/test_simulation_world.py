"""The simulated world and node (issue 16): deterministic, faithful to the contracts, agreeing with the decoder."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from types import SimpleNamespace

import aiohttp
import pytest

from indexer.chains.log_range import is_range_too_large, suggested_size
from indexer.decode.calldata import calls_to, names_by_hash, pool_hash, pool_names_in_calldata
from indexer.decode.logs import ChainSpec, LogDecoder
from indexer.simulation.node import Faults, SimProvider
from indexer.simulation.world import ExpectedRow, World
from indexer.simulation.world_state import BATCHER, CONTRACTS, LOCK_SECONDS, ZERO

SEEDS = range(12)


def build(seed: int, blocks: int = 50, reorgs: bool = True, **options) -> World:
    """A world of `blocks` mined blocks (1-5 transactions each), with a few reorgs."""
    rng = random.Random(seed)
    world = World(random.Random(rng.getrandbits(64)), **options)
    for _ in range(blocks):
        world.mine(rng.randint(1, 5))
        if reorgs and rng.random() < 0.1:
            world.reorg(rng.randint(1, min(4, len(world.canonical) - 1)))
    return world


def fingerprint(world: World) -> str:
    """Every block (any branch), log and expected row, as one string."""
    return json.dumps(
        [
            [b.number, b.hash, b.parent_hash, b.timestamp, list(b.logs), sorted(map(list, b.expected.items()))]
            for b in world.block_by_hash.values()
        ]
        + [[b.hash for b in world.canonical], world.orphans],
        sort_keys=True,
    )


def in_order(rows: dict) -> list[tuple[tuple, ExpectedRow]]:
    return sorted(rows.items(), key=lambda item: (item[1].block_number, item[0][2]))


# -- the world --------------------------------------------------------------------------------------------------------


def test_the_same_seed_makes_the_same_chain_byte_for_byte():
    assert fingerprint(build(7)) == fingerprint(build(7))
    assert fingerprint(build(7)) != fingerprint(build(8))


def test_blocks_link_and_time_strictly_increases():
    world = build(3)
    for parent, block in zip(world.canonical, world.canonical[1:], strict=False):
        assert block.parent_hash == parent.hash and block.number == parent.number + 1
        assert block.timestamp >= parent.timestamp + world.block_seconds
    assert len({b.hash for b in world.block_by_hash.values()}) == len(world.block_by_hash)


def test_logs_have_the_eth_getLogs_shape():
    world = build(1, reorgs=False)
    keys = {"address", "topics", "data", "blockNumber", "blockHash", "blockTimestamp", "transactionHash"}
    keys |= {"transactionIndex", "logIndex", "removed"}
    for block in world.canonical:
        for index, log in enumerate(block.logs):
            assert set(log) == keys and log["removed"] is False
            assert log["address"] == log["address"].lower() and len(log["address"]) == 42
            assert all(len(t) == 66 for t in log["topics"]) and (len(log["data"]) - 2) % 64 == 0
            assert int(log["logIndex"], 16) == index  # block-wide, counting logs of other contracts too
            assert (log["blockHash"], int(log["blockNumber"], 16)) == (block.hash, block.number)
            assert int(log["blockTimestamp"], 16) == block.timestamp
    assert "blockTimestamp" not in build(1, log_timestamps=False).head.logs[0]


def fold(rows: list[tuple[tuple, ExpectedRow]]) -> dict[str, dict]:
    """Pools, balances and pending withdrawals per contract, from the expected rows alone."""
    out = {
        c.address: {"pools": Counter(), "tokens": {}, "balances": Counter(), "owners": {}, "pending": Counter()}
        for c in CONTRACTS
    }
    for _, row in rows:
        s, nft = out[row.contract], row.token_id is not None
        value = row.token_id if nft else row.amount
        if row.event_type == "stake":
            if nft:
                s["tokens"][value] = row.pool
            else:
                s["pools"][row.pool] += value
        elif row.event_type in ("unstake", "unstake_request"):
            if nft:
                assert s["tokens"].pop(value) == row.pool
            else:
                s["pools"][row.pool] -= value
            if row.event_type == "unstake_request":
                s["pending"][(row.staker, value) if nft else row.staker] += 1 if nft else value
        elif row.event_type == "withdrawal":
            s["pending"][(row.staker, value) if nft else row.staker] -= 1 if nft else value
        elif row.event_type == "transfer":
            if nft:
                if row.counterparty == ZERO:
                    del s["owners"][value]
                else:
                    s["owners"][value] = row.counterparty
            else:
                s["balances"][row.staker] -= value
                s["balances"][row.counterparty] += value
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_contract_state_is_what_the_events_add_up_to(seed):
    """Pools = stakes - unstakes, LST supply = sum of balances, pending = requested - withdrawn, at every block."""
    world = build(seed)
    for number in (len(world.canonical) // 2, len(world.canonical) - 1):
        state, folded = world.state_at(number), fold(in_order(world.expected_events(number)))
        for address, c in state.contracts.items():
            f = folded[address]
            if c.nft:
                assert c.token_pool == f["tokens"] and c.owners == f["owners"]
                assert sorted(c.token_pool) == sorted(c.owners)  # each staked NFT has its LST
                assert sorted(t for p in {*c.token_pool.values()} for t in c.staked_tokens(p)) == sorted(c.token_pool)
                pending = Counter({(h, t): 1 for h in c.requests for t, _ in c.pending(h)})
            else:
                assert {p: a for p, a in c.pools.items() if a} == {p: a for p, a in f["pools"].items() if a}
                assert c.balances == {h: b for h, b in f["balances"].items() if b and h != ZERO}
                assert c.supply == sum(c.balances.values()) == -f["balances"][ZERO] == sum(c.pools.values())
                pending = Counter({h: sum(a for a, _ in c.pending(h)) for h in c.requests})
            assert +pending == +f["pending"]


def test_every_trap_of_the_contracts_shows_up():
    """Across a few seeds: foreign unstakes, NFT 0, batcher stakes, both withdrawals, unstakeMultiple on v1 and v2."""
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        world = build(seed, blocks=80)
        rows = in_order(world.expected_events())
        staked: set[tuple[str, str, str]] = set()
        for _, row in rows:
            kind = next(c for c in CONTRACTS if c.address == row.contract)
            if row.event_type == "stake":
                staked.add((row.contract, row.staker, row.pool))
                seen["batcher stake"] += row.staker == BATCHER
                seen["nft 0 staked"] += row.token_id == 0
            if row.event_type in ("unstake", "unstake_request") and (row.contract, row.staker, row.pool) not in staked:
                seen["foreign unstake"] += 1
            if row.event_type == "withdrawal":
                seen[f"withdrawal {kind.kind} v{kind.version}"] += 1
            if row.event_type == "unstake_request":
                assert row.unlock_time == row.block_time + LOCK_SECONDS
        for block in world.canonical:
            for tx in block.txs:
                if tx.call.fn == "unstakeMultiple":
                    seen[f"unstakeMultiple v{next(c for c in CONTRACTS if c.address == tx.call.contract).version}"] += 1
                seen["approval"] += tx.call.fn == "approve"
    wanted = ["batcher stake", "nft 0 staked", "foreign unstake", "withdrawal native v2", "withdrawal erc20 v2"]
    wanted += ["withdrawal erc721 v2", "unstakeMultiple v1", "unstakeMultiple v2", "approval"]
    assert all(seen[name] > 0 for name in wanted), seen


@pytest.mark.parametrize("log_timestamps", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_real_decoder_turns_every_log_into_the_row_the_world_expects(seed, log_timestamps):
    """Pool names come from the transaction's calldata, or from the call trace when a batcher called."""
    world = build(seed, log_timestamps=log_timestamps)
    chain = ChainSpec(world.chain, world.chain_id)
    decoders = {c["address"]: LogDecoder(SimpleNamespace(**c), chain) for c in world.contracts()}
    traced = 0
    for block in world.canonical:
        times = {block.number: block.timestamp}
        for log in block.logs:
            key = (world.chain, log["transactionHash"], int(log["logIndex"], 16))
            if log["address"] not in decoders:
                assert key not in block.expected  # the deposit token's and the NFT collection's own logs
                continue
            tx = world.transaction(log["transactionHash"], block)
            names = names_by_hash(pool_names_in_calldata(tx["input"])) if tx["to"] == log["address"] else {}
            if tx["to"] != log["address"]:
                frames = calls_to(world.trace(next(t for t in block.txs if t.hash == tx["hash"])), log["address"])
                names = {
                    h: n for frame in frames for h, n in names_by_hash(pool_names_in_calldata(frame["input"])).items()
                }
                traced += 1
            event = decoders[log["address"]].decode(log, names, times)
            if key not in block.expected:
                assert event is None  # Approval
                continue
            assert event.key == key
            row = (event.block_number, event.block_hash, event.block_time, event.contract, str(event.event_type))
            row += (event.staker, event.counterparty, event.pool, event.amount, event.token_id, event.unlock_time)
            assert row + (event.asset,) == block.expected[key]
            assert event.pool_hash == (
                pool_hash(event.pool) if event.pool and not event.pool.startswith("0x") else None
            )
    assert traced or seed % 3  # most seeds have batcher transactions


def test_a_reorg_replaces_the_top_and_keeps_the_old_branch_by_hash():
    world = build(5, blocks=20, reorgs=False)
    old = list(world.canonical)
    made = world.reorg(4, length=6)
    assert len(made) == 6 and world.canonical[:-6] == old[:-4]
    assert all(new.hash != gone.hash for new, gone in zip(made, old[-4:], strict=False))
    assert made[0].parent_hash == old[-5].hash and world.head.number == old[-1].number + 2
    assert all(world.block_by_hash[b.hash] is b for b in old)  # the orphans are still served by hash
    assert world.branch(world.orphans[-1]) == old
    assert world.canonical[-7].state is old[-5].state  # rolled back to the fork point
    expected = world.expected_events()
    assert all(
        k not in expected or expected[k].block_hash in {b.hash for b in made} for b in old[-4:] for k in b.expected
    )


def test_a_reorg_may_re_include_the_same_transactions_in_new_blocks():
    world = build(2, blocks=20, reorgs=False, reinclude_rate=1.0)
    old = world.canonical[-3:]
    made = world.reorg(3, length=3)
    old_txs = [t.hash for b in old for t in b.txs]
    new_txs = [t.hash for b in made for t in b.txs]
    assert new_txs and set(new_txs) <= set(old_txs)
    assert all(world.tx_blocks[h][-1] in {b.hash for b in made} for h in new_txs)


def test_a_world_of_fifty_blocks_builds_in_milliseconds():
    started = time.perf_counter()
    for seed in range(10):
        build(seed, reorgs=False)
    assert (time.perf_counter() - started) / 10 < 0.05  # a few ms each; generous for slow machines


# -- the node ---------------------------------------------------------------------------------------------------------


def provider(world: World, seed: int = 0, **faults) -> SimProvider:
    return SimProvider(world, random.Random(seed), Faults(**faults), "node-a")


def logs_query(start: int, end: int, addresses: list[str]) -> list:
    return [{"fromBlock": hex(start), "toBlock": hex(end), "address": addresses}]


async def test_the_node_answers_json_rpc_shapes():
    world = build(4, blocks=30, reorgs=False)
    node = provider(world)
    addresses = [c["address"] for c in world.contracts()]
    head = await node.make_request("eth_blockNumber", [])
    assert head["jsonrpc"] == "2.0" and head["result"] == hex(world.head.number)
    assert (await node.make_request("eth_chainId", []))["result"] == hex(31337)
    latest = (await node.make_request("eth_getBlockByNumber", ["latest", False]))["result"]
    assert latest == (await node.make_request("eth_getBlockByHash", [world.head.hash, False]))["result"]
    assert {"number", "hash", "parentHash", "timestamp"} <= set(latest) and latest["hash"] == world.head.hash
    assert (await node.make_request("eth_getBlockByNumber", [hex(world.head.number + 1), False]))["result"] is None
    logs = (await node.make_request("eth_getLogs", logs_query(0, world.head.number, addresses)))["result"]
    ours = [log for b in world.canonical for log in b.logs if log["address"] in addresses]
    assert logs == ours and len(logs) > 50
    batch = await node.make_batch_request([("eth_blockNumber", []), ("eth_getCode", [addresses[0], "latest"])])
    assert [a["id"] for a in batch] == sorted({a["id"] for a in batch}) and batch[1]["result"] not in ("0x", None)
    assert (await node.make_request("eth_getCode", [ZERO, "latest"]))["result"] == "0x"
    tx = next(t for b in world.canonical for t in b.txs if t.call.fn == "batchStake")
    answer = (await node.make_request("eth_getTransactionByHash", [tx.hash]))["result"]
    assert answer["to"] == BATCHER and answer["input"].startswith("0x") and answer["hash"] == tx.hash
    trace = (await node.make_request("debug_traceTransaction", [tx.hash, {"tracer": "callTracer"}]))["result"]
    assert trace["to"] == BATCHER and list(calls_to(trace, tx.call.contract))
    assert (await node.make_request("eth_getTransactionByHash", ["0x" + "00" * 32]))["result"] is None
    assert (await node.make_request("eth_sendRawTransaction", ["0x"]))["error"]["code"] == -32601
    untraced = SimProvider(world, random.Random(0), Faults(), "node-b", call_tracer=False)
    assert "error" in await untraced.make_request("debug_traceTransaction", [tx.hash, {"tracer": "callTracer"}])
    assert node.requests["eth_getBlockByNumber"] == 2 and node.requests["eth_getCode"] == 2


async def test_the_node_answers_the_same_under_the_same_seed():
    async def answers(seed: int) -> list:
        node = provider(
            build(6, blocks=20), seed, rate_limit=0.2, lagging_head=0.3, stale_branch=0.3, logs_disagree=0.3
        )
        out = []
        for start in range(0, 20, 3):
            try:
                out.append(await node.make_batch_request([("eth_getLogs", logs_query(start, start + 4, []))]))
            except aiohttp.ClientResponseError as exc:
                out.append(exc.status)
        return out

    assert await answers(1) == await answers(1)
    assert await answers(1) != await answers(2)


def fault_world() -> World:
    world = build(9, blocks=25, reorgs=False)
    world.reorg(3, length=4)
    return world


FAULTS = ["rate_limit", "server_error", "timeout", "truncated", "range_limit", "lagging_head", "stale_branch"]


@pytest.mark.parametrize("kind", [*FAULTS, "logs_disagree"])
async def test_each_fault_appears_at_its_rate_and_looks_like_itself(kind):
    world = fault_world()
    node, rate, n = provider(world, 11, **{kind: 0.3}), 0.3, 1500
    addresses = [c["address"] for c in world.contracts()]
    head = world.head.number
    odd = 0
    for i in range(n):
        calls = [("eth_getLogs", logs_query(i % 10, head, addresses)), ("eth_blockNumber", [])]
        calls.append(("eth_getBlockByNumber", [hex(head), False]))
        try:
            logs, number, header = await node.make_batch_request(calls)
        except aiohttp.ClientResponseError as exc:
            assert kind in ("rate_limit", "server_error") and exc.status in (429, 500, 502, 503, 504)
            odd += 1
            continue
        except TimeoutError:
            assert kind == "timeout"
            odd += 1
            continue
        except ValueError:  # json.JSONDecodeError
            assert kind == "truncated"
            odd += 1
            continue
        if "error" in logs:
            message = logs["error"]["message"]
            if kind == "rate_limit":
                assert logs["error"]["code"] == 429
            else:
                assert kind == "range_limit" and is_range_too_large(message) and suggested_size(message, i % 10)
            odd += 1
        elif (
            int(number["result"], 16) != head or header["result"] is None or header["result"]["hash"] != world.head.hash
        ):
            assert kind in ("lagging_head", "stale_branch")
            odd += 1
        elif any(log["blockHash"] != world.canonical[int(log["blockNumber"], 16)].hash for log in logs["result"]):
            assert kind == "logs_disagree"
            odd += 1
    assert node.faults[kind] == odd if kind != "rate_limit" else node.faults[kind] >= odd
    assert abs(node.faults[kind] - rate * n) < 4 * (n * rate * (1 - rate)) ** 0.5, node.faults
    assert set(node.faults) == {kind}


async def test_a_range_above_the_limit_is_refused_the_way_log_range_understands():
    world = build(2, blocks=30, reorgs=False)
    node = provider(world, max_log_range=5)
    refused = await node.make_request("eth_getLogs", logs_query(0, 5, []))
    assert is_range_too_large(refused["error"]["message"])
    assert "result" in await node.make_request("eth_getLogs", logs_query(0, 4, []))


async def test_a_lagging_node_cuts_logs_at_its_head_and_knows_no_block_above():
    world = build(2, blocks=30, reorgs=False)
    node = provider(world, 3, lagging_head=1.0)
    number, logs, top = await node.make_batch_request(
        [
            ("eth_blockNumber", []),
            ("eth_getLogs", logs_query(0, world.head.number, [])),
            ("eth_getBlockByNumber", ["latest", False]),
        ]
    )
    lag_head = int(number["result"], 16)
    assert lag_head < world.head.number and top["result"]["number"] == number["result"]
    assert max(int(log["blockNumber"], 16) for log in logs["result"]) <= lag_head
