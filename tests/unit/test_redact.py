"""Secrets never shown: RPC and feed URLs lose credentials and key-like parts, DSNs their password."""

import pytest

from indexer.redact import redact_dsn, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@rpc.example:8443/path", "https://***@rpc.example:8443/path"),
        ("https://rpc.example/?apikey=abc&chain=1", "https://rpc.example/?apikey=***&chain=***"),
        ("https://eth-mainnet.g.alchemy.com/v2/Xy9kQ2abcDEF_ghiJKL-mn0p", "https://eth-mainnet.g.alchemy.com/v2/***"),
        ("wss://mainnet.infura.io/ws/v3/9aa3d95b3bc440fa88ea12eaa4456161", "wss://mainnet.infura.io/ws/v3/***"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://api.trongrid.io/wallet/getnowblock", "https://api.trongrid.io/wallet/getnowblock"),
        ("https://rpc.example/averyveryverylongpathsegment", "https://rpc.example/averyveryverylongpathsegment"),
        ("https://feed.example/records.json?token=s3cret#frag", "https://feed.example/records.json?token=***#***"),
        ("https://feed.example/?9aa3d95b3bc440fa88ea12ea", "https://feed.example/?***"),
        ("https://rpc.example:notaport/x", "***"),
        ("postgresql://indexer:s3cret@db:5432/indexer", "postgresql://***@db:5432/indexer"),
        ("host=db user=indexer password=s3cret", "host=db user=indexer password=***"),
        ("/var/lib/feeds/delegations.jsonl", "/var/lib/feeds/delegations.jsonl"),
    ],
)
def test_redact_url_hides_credentials_and_keeps_scheme_host_port(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://indexer:s3cret@db:5432/indexer", "postgresql://indexer:***@db:5432/indexer"),
        ("postgresql://indexer:p@ss@db/indexer", "postgresql://indexer:***@db/indexer"),  # '@' in the password
        ("postgresql://indexer@db/indexer", "postgresql://indexer@db/indexer"),  # no password to hide
        ("postgresql://db:5432/indexer", "postgresql://db:5432/indexer"),
        ("postgresql:///indexer?host=/tmp", "postgresql:///indexer?host=/tmp"),
    ],
)
def test_redact_dsn_hides_the_password_and_keeps_the_user(dsn, expected):
    assert redact_dsn(dsn) == expected
