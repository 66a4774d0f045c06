"""chains.yaml: the SPEC example loads, env expansion works, every bad input names its field and why."""

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal

import base58  # the base58 library tronpy itself uses
import pytest
from eth_utils import to_checksum_address  # the library's form, to check ours against
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from tronpy import keys

from indexer.config import (
    TRON_MAINNET_CHAIN_ID,
    Config,
    EvmChain,
    TronChain,
    checksummed,
    load_config,
    parse_config,
    tron_address,
    tron_evm_address,
)
from indexer.errors import ConfigError

CHECKSUMMED = "0xdAC17F958D2ee523a2206206994597C13D831ec7"  # USDT on Ethereum, EIP-55 form
BAD_CHECKSUM = "0xdAC17F958D2ee523a2206206994597c13D831ec7"  # one letter's case flipped (C -> c)
TRON_DOCS = ("TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7", "4174472e7d35395a6b5add427eecb7f4b62ad2b071")
TRON_USDT = ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "41a614f803b6fd780986a42c78ec9c7f77e6ded13c")
TRON_USDC = ("TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8", "413487b63d30b5b2c87fb7ffa8bcfade38eaac1abe")
TRON_WTRX = ("TNUC9Qb1rRpS5CbWLmNMxXBjyFoydXjWFR", "41891cdb91d149f23b1a45d9c5ca78a88d0cb44c18")
TRON_ZERO = ("T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb", "41" + "00" * 20)  # the black-hole address

# SPEC section 8, verbatim except the placeholder "0x..." address.
SPEC_EXAMPLE = """\
database:
  dsn: ${INDEXER_DSN:-}          # empty: an embedded Postgres under ./.indexer/
http:
  listen: ${INDEXER_HTTP:-127.0.0.1:9108}
epochs:
  genesis: 2026-01-01T00:00:00Z
  length_seconds: 86400
validators:                      # optional: known validator ids (pre-seed string pools)
  - id: "validator-one"
    commission_bps: 1000
chains:
  - name: local                  # unique; used as the `chain` value everywhere
    kind: evm                    # evm | tron | social
    chain_id: 31337
    rpc: ["http://127.0.0.1:8545"]   # one or more, tried in order with failover
    confirmations: 2
    poll_interval_seconds: 1
    contracts:
      - name: klyeth
        kind: native             # native | erc20 | erc721
        version: 2               # 1 | 2
        address: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        start_block: 0
        asset: ETH
        decimals: 18
        weight: 1                # points per whole token (or per NFT)
"""


def evm_contract(**over):
    return {
        "name": "klyeth",
        "kind": "native",
        "version": 2,
        "address": CHECKSUMMED,
        "start_block": 100,
        "asset": "ETH",
        **over,
    }


def base(**over):
    """A minimal valid config with one EVM and one TRON chain."""
    data = {
        "chains": [
            {
                "name": "eth",
                "kind": "evm",
                "chain_id": 1,
                "rpc": ["https://rpc.example"],
                "contracts": [evm_contract()],
            },
            {
                "name": "tron",
                "kind": "tron",
                "rpc": ["https://api.trongrid.io"],
                "contracts": [
                    {
                        "name": "usdt",
                        "kind": "erc20",
                        "version": 1,
                        "address": TRON_USDT[0],
                        "start_block": 5,
                        "asset": "USDT",
                        "decimals": 6,
                    }
                ],
            },
        ]
    }
    data.update(over)
    return data


def config_error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "chains.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("chains.yaml: ")
    return message


def write(tmp_path, text):
    path = tmp_path / "chains.yaml"
    path.write_text(text)
    return path


# --- the SPEC example and defaults ---------------------------------------------------------------


def test_spec_example_loads_with_dsn_unset_and_http_from_environment(tmp_path):
    config = load_config(write(tmp_path, SPEC_EXAMPLE), environ={"INDEXER_HTTP": "0.0.0.0:9200"})
    assert config.database.dsn == ""
    assert (config.http.listen, config.http.host, config.http.port) == ("0.0.0.0:9200", "0.0.0.0", 9200)
    assert config.epochs.genesis == datetime(2026, 1, 1, tzinfo=UTC)
    assert config.epochs.length_seconds == 86400
    assert [(v.id, v.commission_bps) for v in config.validators] == [("validator-one", 1000)]
    chain = config.chain("local")
    assert isinstance(chain, EvmChain)
    assert (chain.chain_id, chain.rpc, chain.confirmations, chain.poll_interval_seconds) == (
        31337,
        ("http://127.0.0.1:8545",),
        2,
        1.0,
    )
    (contract,) = chain.contracts
    assert (contract.name, contract.kind, contract.version, contract.start_block) == ("klyeth", "native", 2, 0)
    assert contract.address == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert (contract.asset, contract.decimals, contract.weight) == ("ETH", 18, Decimal(1))


def test_spec_example_defaults_http_listen_when_unset(tmp_path):
    config = load_config(write(tmp_path, SPEC_EXAMPLE), environ={})
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9108)


def test_defaults_fill_every_optional_key():
    config = parse_config(base())
    assert config.database.dsn == "" and config.http.listen == "127.0.0.1:9108" and config.validators == ()
    assert config.epochs.genesis == datetime(2026, 1, 1, tzinfo=UTC) and config.epochs.length_seconds == 86400
    eth, tron = config.chains
    assert (
        eth.confirmations,
        eth.poll_interval_seconds,
        eth.max_block_range,
        eth.initial_block_range,
        eth.target_logs_per_request,
        eth.request_timeout_seconds,
        eth.use_call_tracer,
    ) == (12, 2.0, 10000, 10, 10000, 30.0, True)
    assert eth.contracts[0].decimals == 18 and eth.contracts[0].weight == Decimal(1)
    assert isinstance(tron, TronChain) and tron.chain_id == TRON_MAINNET_CHAIN_ID and tron.api_key is None


def test_erc721_defaults_to_version_1_and_zero_decimals():
    data = base()
    data["chains"][0]["contracts"] = [
        {"name": "nft", "kind": "erc721", "address": CHECKSUMMED, "start_block": 0, "asset": "KNFT"}
    ]
    nft = parse_config(data).chains[0].contracts[0]
    assert (nft.version, nft.decimals) == (1, 0)


def test_erc721_version_2_is_accepted():
    """ERC-721 v2 (3-day lock, one Withdrawal per NFT) is one of the real contracts."""
    data = base()
    data["chains"][0]["contracts"] = [
        {"name": "nft", "kind": "erc721", "version": 2, "address": CHECKSUMMED, "start_block": 0, "asset": "KNFT"}
    ]
    nft = parse_config(data).chains[0].contracts[0]
    assert (nft.kind, nft.version, nft.decimals) == ("erc721", 2, 0)


def test_social_chain_defaults():
    social = {"name": "social", "kind": "social", "url": "./feed.jsonl"}
    chain = parse_config(base(chains=[social])).chain("social")
    assert (chain.poll_interval_seconds, chain.settle_seconds, chain.asset, chain.decimals, chain.weight) == (
        30.0,
        120,
        "SOCIAL",
        0,
        1,
    )


def test_config_is_frozen():
    config = parse_config(base())
    with pytest.raises(ValidationError):
        config.chains[0].confirmations = 1


def test_genesis_with_an_offset_is_normalized_to_utc():
    config = parse_config(base(epochs={"genesis": "2026-01-01T03:00:00+03:00"}))
    assert config.epochs.genesis == datetime(2026, 1, 1, tzinfo=UTC) and config.epochs.genesis.tzinfo == UTC


def test_http_listen_accepts_a_bracketed_ipv6_host():
    http = parse_config(base(http={"listen": "[::1]:8080"})).http
    assert (http.host, http.port) == ("::1", 8080)


# --- helpers on the loaded config ------------------------------------------------------------------


def test_contract_lookup_by_address_in_any_spelling():
    eth, tron = parse_config(base()).chains
    assert eth.contract_for(CHECKSUMMED.upper().replace("0X", "0x")).name == "klyeth"
    assert eth.contract_for(CHECKSUMMED.lower()).name == "klyeth"
    assert eth.contract_for("0x" + "00" * 20) is None
    assert eth.addresses == (CHECKSUMMED.lower(),) and eth.start_block == 100
    assert tron.addresses == (TRON_USDT[0],)
    for spelling in (TRON_USDT[0], TRON_USDT[1], TRON_USDT[1][2:], "0x" + TRON_USDT[1][2:]):
        assert tron.contract_for(spelling).name == "usdt"
    assert tron.contract_for("not an address") is None


def test_chain_start_block_is_the_earliest_contract():
    data = base()
    data["chains"][0]["contracts"].append(evm_contract(name="late", address="0x" + "11" * 20, start_block=7))
    assert parse_config(data).chains[0].start_block == 7


def test_unknown_chain_name_raises_config_error_listing_known_ones():
    with pytest.raises(ConfigError, match="unknown chain 'bsc'.*eth, tron"):
        parse_config(base()).chain("bsc")


def test_tron_address_in_hex_form_is_normalized_to_base58():
    data = base()
    data["chains"][1]["contracts"][0]["address"] = TRON_USDT[1]
    assert parse_config(data).chains[1].contracts[0].address == TRON_USDT[0]


def test_all_lower_and_all_upper_evm_addresses_are_accepted_as_is():
    for spelling in (CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()):
        data = base()
        data["chains"][0]["contracts"][0]["address"] = spelling
        assert parse_config(data).chains[0].contracts[0].address == CHECKSUMMED.lower()


def test_weight_from_a_yaml_float_is_an_exact_decimal(tmp_path):
    text = SPEC_EXAMPLE.replace("weight: 1 ", "weight: 0.1 ")
    weight = load_config(write(tmp_path, text), environ={}).chains[0].contracts[0].weight
    assert isinstance(weight, Decimal) and weight == Decimal("0.1")


@pytest.mark.parametrize(("given", "expected"), [(3, Decimal(3)), ("2.5", Decimal("2.5")), (0, Decimal(0))])
def test_weight_accepts_int_and_string(given, expected):
    data = base()
    data["chains"][0]["contracts"][0]["weight"] = given
    assert parse_config(data).chains[0].contracts[0].weight == expected


# --- environment expansion -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${KEY}", {"KEY": "abc"}, "abc"),
        ("${KEY:-dflt}", {}, "dflt"),
        ("${KEY:-dflt}", {"KEY": "set"}, "set"),
        ("${KEY:-dflt}", {"KEY": ""}, "dflt"),
        ("${KEY}", {"KEY": ""}, ""),
        ("${KEY:-}", {}, ""),
        ("$${KEY}", {"KEY": "abc"}, "${KEY}"),
        ("pre-${A}-${B:-b}-post", {"A": "a"}, "pre-a-b-post"),
        ("$KEY and $", {"KEY": "abc"}, "$KEY and $"),
    ],
)
def test_env_expansion_in_string_scalars(tmp_path, value, environ, expected):
    text = SPEC_EXAMPLE.replace("dsn: ${INDEXER_DSN:-}", f"dsn: '{value}'")
    assert load_config(write(tmp_path, text), environ=environ).database.dsn == expected


def test_env_expansion_reaches_nested_lists_and_feeds_typed_fields(tmp_path):
    text = SPEC_EXAMPLE.replace('"http://127.0.0.1:8545"', '"https://eth.example/v2/${RPC_KEY}"').replace(
        "confirmations: 2", "confirmations: ${CONFIRMATIONS:-5}"
    )
    chain = load_config(write(tmp_path, text), environ={"RPC_KEY": "k3y"}).chains[0]
    assert chain.rpc == ("https://eth.example/v2/k3y",) and chain.confirmations == 5


def test_unset_variable_without_default_names_the_field_and_variable(tmp_path):
    text = SPEC_EXAMPLE.replace('"http://127.0.0.1:8545"', '"https://eth.example/v2/${ALCHEMY_KEY}"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'chains.yaml'}: chains[0].rpc[0]: ")
    assert "ALCHEMY_KEY" in message and "not set" in message and "\n" not in message


def test_malformed_placeholder_is_an_error(tmp_path):
    text = SPEC_EXAMPLE.replace("${INDEXER_DSN:-}", "${1BAD}")
    with pytest.raises(ConfigError, match=r"database\.dsn: malformed"):
        load_config(write(tmp_path, text), environ={})


# --- every bad input names its field and the reason ------------------------------------------------


def _set(path, value):
    """A mutation that sets data[path...] = value (or deletes it when value is DELETE)."""

    def mutate(data):
        node = data
        for part in path[:-1]:
            node = node[part]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


DELETE = object()
C0 = ("chains", 0, "contracts", 0)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _set(("colour",), "red"),
            "colour: unknown key (allowed: database, http, epochs, verify, validators, loyalty, chains)",
        ),
        (_set((*C0, "colour"), "red"), "chains[0].contracts[0].colour: unknown key"),
        (_set(("chains", 1, "colour"), "red"), "chains[1].colour: unknown key"),
        (_set(("http",), {"listen": "x", "tls": True}), "http.tls: unknown key"),
        (_set(("chains", 0, "confirmations"), "many"), "chains[0].confirmations: input should be a valid integer"),
        (_set(("chains", 0, "rpc"), "https://rpc.example"), "chains[0].rpc: must be a list"),
        (_set(("chains", 0, "rpc"), []), "chains[0].rpc: must list at least one entry"),
        (_set(("chains", 0, "rpc"), ["ftp://rpc.example"]), "chains[0].rpc[0]: not a http/https/ws/wss URL"),
        (_set(("chains", 0, "chain_id"), 0), "chains[0].chain_id: input should be greater than 0"),
        (_set(("chains", 0, "poll_interval_seconds"), 0), "chains[0].poll_interval_seconds: input should be greater"),
        (_set(("chains", 0, "initial_block_range"), 20000), "chains[0].initial_block_range: must not exceed"),
        (_set(("chains", 0, "max_response_bytes"), 1000), "chains[0].max_response_bytes: input should be greater than"),
        (_set(("chains", 0, "name"), "Bad Name"), "chains[0].name: a chain name is lower-case"),
        (_set(("chains", 1, "name"), "eth"), "chains[1].name: duplicate chain name 'eth'"),
        (_set(("chains", 0, "kind"), "solana"), "chains[0].kind: unknown kind 'solana'"),
        (_set(("chains", 0, "kind"), DELETE), "chains[0].kind: required field missing"),
        (
            _set(("chains", 0, "contracts"), [evm_contract(), evm_contract(name="b", address=CHECKSUMMED.lower())]),
            f"chains[0].contracts[1].address: duplicate contract address '{CHECKSUMMED.lower()}'",
        ),
        (
            _set(("chains", 0, "contracts"), [evm_contract(), evm_contract(address="0x" + "11" * 20)]),
            "chains[0].contracts[1].name: duplicate contract name 'klyeth'",
        ),
        (_set((*C0, "address"), BAD_CHECKSUM), "chains[0].contracts[0].address: bad EIP-55 checksum"),
        (_set((*C0, "address"), "0x1234"), "chains[0].contracts[0].address: not 0x followed by 40 hex digits"),
        (_set((*C0, "address"), int(CHECKSUMMED, 16)), "chains[0].contracts[0].address: put the address in quotes"),
        (_set((*C0, "start_block"), DELETE), "chains[0].contracts[0].start_block: required field missing"),
        (_set((*C0, "start_block"), -1), "chains[0].contracts[0].start_block: input should be greater than or equal"),
        (_set((*C0, "version"), DELETE), "chains[0].contracts[0].version: required field missing"),
        (_set((*C0, "version"), 3), "chains[0].contracts[0].version: input should be 1 or 2"),
        (_set((*C0, "kind"), "erc1155"), "chains[0].contracts[0].kind: input should be 'native', 'erc20' or 'erc721'"),
        (_set((*C0, "decimals"), 78), "chains[0].contracts[0].decimals: input should be less than or equal to 77"),
        (_set((*C0, "asset"), ""), "chains[0].contracts[0].asset: string should have at least 1 character"),
        (_set((*C0, "weight"), -1), "chains[0].contracts[0].weight: input should be greater than or equal to 0"),
        (_set((*C0, "weight"), "lots"), "chains[0].contracts[0].weight: input should be a valid decimal"),
        (
            _set(("chains", 1, "contracts", 0, "address"), "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u"),
            "chains[1].contracts[0].address: bad base58check checksum",
        ),
        (
            _set(("chains", 1, "contracts", 0, "address"), CHECKSUMMED),
            "chains[1].contracts[0].address: not a TRON address",
        ),
        (_set(("chains",), []), "chains: must list at least one entry"),
        (_set(("chains",), DELETE), "chains: required field missing"),
        (_set(("validators",), [{"id": "v"}, {"id": "v"}]), "validators[1].id: duplicate validator id 'v'"),
        (
            _set(("validators",), [{"id": "v", "commission_bps": 10001}]),
            "validators[0].commission_bps: input should be less",
        ),
        (_set(("http",), {"listen": "127.0.0.1:70000"}), "http.listen: not host:port with a port in 1-65535"),
        (_set(("http",), {"listen": "9108"}), "http.listen: not host:port"),
        (_set(("epochs",), {"genesis": "2026-01-01T00:00:00"}), "epochs.genesis: input should have timezone info"),
        (_set(("epochs",), {"length_seconds": 0}), "epochs.length_seconds: input should be greater than 0"),
        (
            _set(("chains", 0), {"name": "s", "kind": "social", "url": "ftp://feed"}),
            "chains[0].url: not a http/https URL",
        ),
        (
            _set(("chains", 0), {"name": "s", "kind": "social", "url": "./feed.jsonl", "settle_seconds": -1}),
            "chains[0].settle_seconds: input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_input_names_the_field_and_the_reason(mutate, expected):
    data = copy.deepcopy(base())
    mutate(data)
    assert expected in config_error(data)


def test_several_errors_are_joined_on_one_line():
    data = base()
    data["chains"][0]["confirmations"] = -1
    data["chains"][1]["contracts"][0]["colour"] = "red"
    message = config_error(data)
    assert "chains[0].confirmations: " in message and "; chains[1].contracts[0].colour: unknown key" in message


def test_secrets_are_not_echoed_in_errors():
    data = base(database={"dsn": 5})
    data["chains"][1]["api_key"] = 12345
    message = config_error(data)
    assert "database.dsn: input should be a valid string" in message and "12345" not in message


def test_rpc_key_is_redacted_in_errors():
    data = base()
    data["chains"][0]["rpc"] = ["gopher://eth-mainnet.g.alchemy.com/v2/abcdEFGH1234ijklMNOP5678"]
    message = config_error(data)
    assert "chains[0].rpc[0]" in message and "abcdEFGH1234" not in message and "/v2/***" in message


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        parse_config(["a"])  # type: ignore[arg-type]


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write(tmp_path, "# nothing\n"))


def test_bad_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, "database:\n  dsn: x\nchains: [unclosed\nhttp: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 4, column 5: ") and "\n" not in message
    assert "started at line 3" in message


def test_bad_yaml_indentation_reports_its_line(tmp_path):
    path = write(tmp_path, "database:\n  dsn: x\n bad: 1\n")
    with pytest.raises(ConfigError, match=r"chains\.yaml: line 3, column 2: "):
        load_config(path)


def test_duplicate_yaml_key_is_an_error_with_its_line(tmp_path):
    path = write(tmp_path, "http:\n  listen: a:1\n  listen: b:2\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: duplicate key 'listen'"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_load_errors_name_the_file(tmp_path):
    path = write(tmp_path, SPEC_EXAMPLE.replace("confirmations: 2", "confirmations: two"))
    expected = rf"^{path}: chains\[0\]\.confirmations: input should be a valid integer"
    with pytest.raises(ConfigError, match=expected):
        load_config(path, environ={})


# --- secrets ---------------------------------------------------------------------------------------


def test_repr_and_redacted_never_show_the_api_key_or_rpc_keys():
    data = base()
    data["chains"][1]["api_key"] = "tron-secret-key"
    data["chains"][0]["rpc"] = ["https://eth-mainnet.g.alchemy.com/v2/Xy9kQ2abcDEF_ghiJKL-mn0p"]
    config = parse_config(data)
    assert config.chains[1].api_key == "tron-secret-key"
    for shown in (repr(config), str(config), repr(config.chains[1]), str(config.redacted())):
        assert "tron-secret-key" not in shown and "Xy9kQ2" not in shown
    assert config.redacted()["chains"][1]["api_key"] == "***"
    assert config.redacted()["chains"][0]["rpc"] == ["https://eth-mainnet.g.alchemy.com/v2/***"]


# --- TRON addresses (tronpy.keys) ------------------------------------------------------------------


@pytest.mark.parametrize(("b58", "hex_"), [TRON_DOCS, TRON_USDT, TRON_USDC, TRON_WTRX, TRON_ZERO])
def test_tron_addresses_published_vectors_every_spelling(b58, hex_):
    assert tron_address(b58) == tron_address(hex_) == tron_address("0x" + hex_) == b58
    assert tron_address(hex_[2:]) == tron_address("0x" + hex_[2:]) == b58  # 20-byte form of event logs
    assert tron_address(hex_.upper()) == b58
    assert tron_evm_address(b58) == tron_evm_address(hex_) == "0x" + hex_[2:]


def test_tron_address_rejects_a_changed_character_and_foreign_characters():
    with pytest.raises(ValueError, match="^bad base58check checksum$"):
        tron_address(TRON_USDT[0][:-1] + "u")
    with pytest.raises(ValueError, match="^invalid base58 character '0'$"):
        tron_address("T0" + TRON_USDT[0][2:])
    with pytest.raises(ValueError, match="^invalid base58 character ' '$"):
        tron_address(TRON_USDT[0] + " ")


@pytest.mark.parametrize(
    "address",
    [
        base58.b58encode_check(b"\x00" + bytes(range(20))).decode(),  # valid base58check, Bitcoin-style version
        "T9yD14Nj9j7xAB4dbGeiX9h8unkKB9nv2z",  # valid base58check T... of 0x40 + ff * 20: tronpy alone takes it
        "TZJozAg1ruapycCicgz31GxvYJ1G1qELV7",  # likewise 0x42 + 00 * 20
        "42" + TRON_USDT[1][2:],
        "0x42" + TRON_USDT[1][2:],
        TRON_USDT[0][:-1],  # truncated
        "",
    ],
)
def test_tron_address_requires_21_bytes_with_the_0x41_version_byte(address):
    with pytest.raises(ValueError, match=r"^not a TRON address \(needs 21 bytes starting with 0x41\)$"):
        tron_address(address)


@given(st.binary(min_size=20, max_size=20))
def test_tron_address_spellings_of_any_20_bytes_agree_and_round_trip(body):
    encoded = tron_address(body.hex())
    assert encoded.startswith("T") and len(encoded) == 34
    assert tron_address("41" + body.hex()) == tron_address("0x" + body.hex()) == tron_address(encoded) == encoded
    assert tron_evm_address(encoded) == "0x" + body.hex()
    assert keys.to_hex_address(encoded) == "41" + body.hex()  # tronpy's own decoding agrees


@given(st.binary(min_size=20, max_size=20), st.integers(0, 33), st.sampled_from(base58.BITCOIN_ALPHABET.decode()))
def test_tron_address_refuses_any_one_character_changed(body, position, char):
    encoded = tron_address(body.hex())
    changed = encoded[:position] + char + encoded[position + 1 :]
    if changed != encoded:
        with pytest.raises(ValueError):
            tron_address(changed)


def test_config_module_has_no_global_state_between_loads(tmp_path):
    path = write(tmp_path, SPEC_EXAMPLE)
    assert load_config(path, environ={"INDEXER_HTTP": "h:1"}).http.port == 1
    assert load_config(path, environ={}).http.port == 9108
    assert isinstance(load_config(path, environ={}), Config)


def test_schedules_and_read_dsn_default_as_spec_section_9():
    config = parse_config(base())
    assert (config.epochs.auto_close, config.epochs.close_after_seconds) == (False, 3600)
    assert config.verify.interval_seconds == 3600 and config.database.read_dsn == ""
    data = base() | {
        "epochs": {"auto_close": True, "close_after_seconds": 0},
        "verify": {"interval_seconds": 0},
        "database": {"dsn": "postgresql://a:secret@db/x", "read_dsn": "postgresql://r:hidden@replica/x"},
    }
    config = parse_config(data)
    assert (config.epochs.auto_close, config.epochs.close_after_seconds, config.verify.interval_seconds) == (True, 0, 0)
    shown = json.dumps(config.redacted())
    assert "secret" not in shown and "hidden" not in shown and "replica" in shown


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        (
            "epochs",
            {"close_after_seconds": -1},
            "epochs.close_after_seconds: input should be greater than or equal to 0",
        ),
        ("verify", {"interval_seconds": -5}, "verify.interval_seconds: input should be greater than or equal to 0"),
        ("verify", {"every": 5}, "verify.every: unknown key"),
        ("epochs", {"auto_close": "sometimes"}, "epochs.auto_close: input should be a valid boolean"),
    ],
)
def test_bad_schedule_settings_name_the_field(section, value, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(base() | {section: value})
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "address",  # the test vectors of EIP-55 itself
    ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
     "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"],
)  # fmt: skip
def test_the_eip55_form_is_the_eips_own(address):
    assert checksummed(address.lower()) == address
    assert checksummed(address.upper().replace("0X", "0x")) == address


@given(st.binary(min_size=20, max_size=20))
def test_the_eip55_form_is_eth_utils(raw):
    address = "0x" + raw.hex()
    assert checksummed(address) == to_checksum_address(address)
