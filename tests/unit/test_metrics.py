"""The metrics module: names, labels, suffixes, and what the helpers count (parsed back from the exposition)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from indexer import __version__
from indexer.metrics import LOG_RANGE_BUCKETS, REORG_DEPTH_BUCKETS, RPC_SECONDS_BUCKETS, Metrics
from indexer.store.health import Reading


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition as {(name, labels): value}, parsed by prometheus-client's parser."""
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(metrics.exposition().decode())}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_every_metric_has_the_indexer_prefix(metrics: Metrics) -> None:
    metrics.rpc_observer("c")("eth_chainId", "http://node", 0.2, "connection")
    found = families(metrics)
    assert len(found) > 10
    assert all(name.startswith("indexer_") for name in found), sorted(found)


def test_declares_every_metric_the_spec_asks_for(metrics: Metrics) -> None:
    metrics.rpc_observer("c")("eth_getLogs", "http://node/***", 0.1, "timeout")
    metrics.batch_indexed("c", 1, 1, 1, {"stake": 1}, 0, 0)
    metrics.log_range_fetched("c", 10)
    metrics.reorg("c", 1)
    metrics.feed_rejected("social", "bad_signature")
    metrics.feed_late("social", 1)
    expected = {
        "indexer_head_block": "gauge",
        "indexer_indexed_block": "gauge",
        "indexer_confirmed_block": "gauge",
        "indexer_lag_blocks": "gauge",
        "indexer_lag_seconds": "gauge",
        "indexer_events_ingested": "counter",
        "indexer_rpc_requests": "counter",
        "indexer_rpc_errors": "counter",
        "indexer_rpc_request_seconds": "histogram",
        "indexer_get_logs_range_blocks": "histogram",
        "indexer_reorgs": "counter",
        "indexer_reorg_depth": "histogram",
        "indexer_projector_lag_seconds": "gauge",
        "indexer_epochs_closed": "counter",
        "indexer_feed_records_rejected": "counter",
        "indexer_feed_records_late": "counter",
        "indexer_process_start_time_seconds": "gauge",
        "indexer_build_info": "gauge",  # an Info reads back as a gauge of value 1
    }
    found = families(metrics)
    assert {name: found.get(name) for name in expected} == expected


def test_counters_end_in_total_and_durations_in_seconds(metrics: Metrics) -> None:
    metrics.rpc_observer("c")("eth_chainId", "http://node", 0.2, "connection")
    metrics.batch_indexed("c", 1, 1, 1, {"stake": 1}, 0, 0)
    metrics.reorg("c", 2)
    metrics.feed_rejected("social", "duplicate")
    metrics.feed_late("social", 2)
    metrics.apply_reading(Reading(chains=(), frontier_time=None, foldable_time=None, epochs_closed=1))
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        names = {s.name for s in family.samples}
        if family.type == "counter":
            assert f"{family.name}_total" in names, family.name
        if "seconds" in family.name and not family.name.endswith("_created"):  # client's creation timestamps
            assert family.name.endswith("_seconds") or family.name.endswith("_seconds_total"), family.name


def test_per_chain_series_carry_a_chain_label(metrics: Metrics) -> None:
    metrics.rpc_observer("c")("eth_chainId", "http://node", 0.2, "connection")
    metrics.batch_indexed("c", 1, 2, 1, {"stake": 1}, 0, 0)
    metrics.log_range_fetched("c", 10)
    metrics.reorg("c", 2)
    per_chain = {
        "indexer_head_block",
        "indexer_indexed_block",
        "indexer_confirmed_block",
        "indexer_lag_blocks",
        "indexer_lag_seconds",
        "indexer_events_ingested",
        "indexer_rpc_requests",
        "indexer_rpc_errors",
        "indexer_rpc_request_seconds",
        "indexer_get_logs_range_blocks",
        "indexer_reorgs",
        "indexer_reorg_depth",
    }
    seen = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name in per_chain:
            assert family.samples, family.name
            assert all(s.labels.get("chain") == "c" for s in family.samples), family.name
            seen.add(family.name)
    assert seen == per_chain


def test_rpc_observer_counts_requests_and_errors_by_kind(metrics: Metrics) -> None:
    observe = metrics.rpc_observer("mainnet")
    url = "https://node.example/***"
    observe("eth_blockNumber", url, 0.02, None)
    observe("eth_blockNumber", url, 0.03, None)
    observe("eth_blockNumber", url, 5.0, "timeout")
    observe("eth_blockNumber", url, 0.01, "http_503")
    observe("eth_blockNumber", url, 0.01, "http_503")
    observe("batch:eth_getLogs", url, 0.5, None)

    assert value(metrics, "indexer_rpc_requests_total", chain="mainnet", url=url, method="eth_blockNumber") == 5
    assert value(metrics, "indexer_rpc_requests_total", chain="mainnet", url=url, method="batch:eth_getLogs") == 1
    errors = lambda kind: value(  # noqa: E731
        metrics, "indexer_rpc_errors_total", chain="mainnet", url=url, method="eth_blockNumber", kind=kind
    )
    assert errors("timeout") == 1
    assert errors("http_503") == 2
    assert errors("connection") is None
    assert (
        value(metrics, "indexer_rpc_errors_total", chain="mainnet", url=url, method="batch:eth_getLogs", kind="timeout")
        is None
    )
    assert value(metrics, "indexer_rpc_request_seconds_count", chain="mainnet", method="eth_blockNumber") == 5
    assert value(metrics, "indexer_rpc_request_seconds_sum", chain="mainnet", method="eth_blockNumber") == (
        pytest.approx(5.07)
    )


def test_rpc_latency_histogram_buckets(metrics: Metrics) -> None:
    observe = metrics.rpc_observer("c")
    for seconds in (0.004, 0.3, 0.3, 7.0, 120.0):
        observe("eth_call", "http://n", seconds, None)
    bucket = lambda le: value(metrics, "indexer_rpc_request_seconds_bucket", chain="c", method="eth_call", le=le)  # noqa: E731
    assert bucket("0.005") == 1
    assert bucket("0.25") == 1
    assert bucket("0.5") == 3
    assert bucket("10.0") == 4
    assert bucket("60.0") == 4
    assert bucket("+Inf") == 5
    assert RPC_SECONDS_BUCKETS[0] <= 0.005 and RPC_SECONDS_BUCKETS[-1] >= 30


def test_reorg_counts_and_depth_histogram(metrics: Metrics) -> None:
    metrics.reorg("c", 1)
    metrics.reorg("c", 3)
    metrics.reorg("c", 40)
    assert value(metrics, "indexer_reorgs_total", chain="c") == 3
    assert value(metrics, "indexer_reorg_depth_bucket", chain="c", le="1.0") == 1
    assert value(metrics, "indexer_reorg_depth_bucket", chain="c", le="3.0") == 2
    assert value(metrics, "indexer_reorg_depth_bucket", chain="c", le="32.0") == 2
    assert value(metrics, "indexer_reorg_depth_bucket", chain="c", le="64.0") == 3
    assert value(metrics, "indexer_reorg_depth_sum", chain="c") == 44
    assert list(REORG_DEPTH_BUCKETS) == sorted(REORG_DEPTH_BUCKETS)


def test_get_logs_range_histogram(metrics: Metrics) -> None:
    for blocks in (1, 10, 5000, 10_000, 20_000):
        metrics.log_range_fetched("c", blocks)
    assert value(metrics, "indexer_get_logs_range_blocks_bucket", chain="c", le="1.0") == 1
    assert value(metrics, "indexer_get_logs_range_blocks_bucket", chain="c", le="10000.0") == 4
    assert value(metrics, "indexer_get_logs_range_blocks_count", chain="c") == 5
    assert LOG_RANGE_BUCKETS[-1] >= 10_000


def test_batch_indexed_sets_heights_lag_and_counts_events_by_type(metrics: Metrics) -> None:
    metrics.batch_indexed(
        "c", block=90, head=100, confirmed=88, events_by_type={"stake": 3, "unstake": 1}, block_time=1_000, now=1_060
    )
    metrics.batch_indexed(
        "c", block=100, head=100, confirmed=88, events_by_type={"stake": 2, "transfer": 0}, block_time=1_120, now=1_130
    )
    assert value(metrics, "indexer_head_block", chain="c") == 100
    assert value(metrics, "indexer_indexed_block", chain="c") == 100
    assert value(metrics, "indexer_confirmed_block", chain="c") == 88
    assert value(metrics, "indexer_lag_blocks", chain="c") == 0
    assert value(metrics, "indexer_lag_seconds", chain="c") == 0  # at the head
    assert value(metrics, "indexer_events_ingested_total", chain="c", type="stake") == 5
    assert value(metrics, "indexer_events_ingested_total", chain="c", type="unstake") == 1
    assert value(metrics, "indexer_events_ingested_total", chain="c", type="transfer") is None


def test_lag_seconds_is_the_age_of_the_indexed_block_while_behind(metrics: Metrics) -> None:
    metrics.batch_indexed("c", block=90, head=100, confirmed=88, events_by_type={}, block_time=1_000, now=1_060)
    assert value(metrics, "indexer_lag_blocks", chain="c") == 10
    assert value(metrics, "indexer_lag_seconds", chain="c") == 60


def test_event_type_enums_become_their_value() -> None:
    from indexer.events import EventType

    metrics = Metrics(CollectorRegistry())
    metrics.batch_indexed("c", 1, 1, 1, {EventType.UNSTAKE_REQUEST: 2})
    assert value(metrics, "indexer_events_ingested_total", chain="c", type="unstake_request") == 2


def test_feed_rejections_by_reason(metrics: Metrics) -> None:
    metrics.feed_rejected("social", "bad_signature")
    metrics.feed_rejected("social", "bad_signature")
    metrics.feed_rejected("social", "unknown_validator")
    assert value(metrics, "indexer_feed_records_rejected_total", feed="social", reason="bad_signature") == 2
    assert value(metrics, "indexer_feed_records_rejected_total", feed="social", reason="unknown_validator") == 1


def test_epochs_closed_is_the_count_the_database_read_gave(metrics: Metrics) -> None:
    assert value(metrics, "indexer_epochs_closed_total") == 0  # exported before the first read
    metrics.apply_reading(Reading(chains=(), frontier_time=None, foldable_time=None, epochs_closed=3))
    assert value(metrics, "indexer_epochs_closed_total") == 3
    assert families(metrics)["indexer_epochs_closed"] == "counter"


def test_build_info_and_process_start_time(metrics: Metrics) -> None:
    build = [s for s in samples(metrics) if s[0] == "indexer_build_info"]
    assert len(build) == 1
    assert dict(build[0][1])["version"] == __version__
    assert samples(metrics)[build[0]] == 1
    start = value(metrics, "indexer_process_start_time_seconds")
    assert start is not None and start > 1_600_000_000


def test_status_rows_replace_the_per_chain_gauges(metrics: Metrics) -> None:
    row = {
        "head_block": 10,
        "indexed_block": 9,
        "confirmed_block": 8,
        "lag_blocks": 1,
        "lag_seconds": 12.0,
        "updated_at": 1_700_000_000.0,
        "unresolved_pools": 0,
    }
    metrics.apply_status([{"chain": "a", **row}, {"chain": "b", **row}])
    metrics.apply_status([{"chain": "b", **row, "indexed_block": 10}])
    assert value(metrics, "indexer_indexed_block", chain="a") is None  # a chain without a cursor is dropped
    assert value(metrics, "indexer_indexed_block", chain="b") == 10
    assert value(metrics, "indexer_lag_seconds", chain="b") == 12


def test_registries_are_independent() -> None:
    one, two = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    one.reorg("c", 1)
    assert value(one, "indexer_reorgs_total", chain="c") == 1
    assert value(two, "indexer_reorgs_total", chain="c") is None


def test_a_periodic_verify_sets_every_contracts_mismatches_and_the_time_it_ran_through():
    from prometheus_client import CollectorRegistry

    from indexer.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    value = metrics.registry.get_sample_value
    contracts = [("local", "klyeth"), ("local", "klynft")]
    metrics.verified(contracts, [("local", "klyeth"), ("local", "klyeth")], 40, now=1_800_000_000.0)
    assert value("indexer_verify_mismatches", {"chain": "local", "contract": "klyeth"}) == 2
    assert value("indexer_verify_mismatches", {"chain": "local", "contract": "klynft"}) == 0
    assert value("indexer_verify_readings_total") == 40
    assert value("indexer_verify_last_success_timestamp_seconds") == 1_800_000_000
    metrics.verified(contracts, [], 40, now=1_800_000_060.0)  # after a reproject: back to 0
    assert value("indexer_verify_mismatches", {"chain": "local", "contract": "klyeth"}) == 0
    assert value("indexer_verify_readings_total") == 80
