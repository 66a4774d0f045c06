"""The validated model of `chains.yaml`: load it once at start, fail with the field and the reason."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from eth_hash.auto import keccak
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from indexer.errors import ConfigError
from indexer.redact import redact_url

CHAIN_KINDS = ("evm", "tron", "social")
TRON_MAINNET_CHAIN_ID = 728126428
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_HEX = re.compile(r"[0-9a-fA-F]*")
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _redact(name: Any, value: Any) -> Any:
    """Mask a field's value for display if it is a secret or may carry one."""
    if name == "api_key":
        return "***" if value else value
    if name in ("rpc", "url", "dsn", "read_dsn"):
        return redact_url(value) if isinstance(value, str) else type(value)(map(redact_url, value))
    return value


def tron_address(value: str) -> str:
    """Return the base58 `T...` form of a TRON address given as base58, `41`+40 hex, or 20-byte hex (logs).

    ValueError says what is wrong: an invalid base58 character, a bad checksum, or not
    21 bytes starting with 0x41 (the TRON version byte).
    """
    from tronpy import keys  # here: only TRON chains need it, and its import costs every start 60 ms

    text = value.removeprefix("0x")
    if len(text) in (40, 42) and _HEX.fullmatch(text):
        hex41 = text if len(text) == 42 else "41" + text
    elif (bad := next((ch for ch in value if ch not in _B58), None)) is not None:
        raise ValueError(f"invalid base58 character {bad!r}")
    elif value.startswith("T") and len(value) == 34:  # the one base58 shape of 0x41 + 20 bytes
        try:
            hex41 = keys.to_hex_address(value)
        except ValueError:  # tronpy's BadAddress; every character is base58, so the checksum is wrong
            raise ValueError("bad base58check checksum") from None
    else:
        hex41 = ""
    if not keys.is_hex_address(hex41):
        raise ValueError("not a TRON address (needs 21 bytes starting with 0x41)")
    return keys.to_base58check_address(hex41)


def tron_evm_address(value: str) -> str:
    """The `0x` + 20-byte hex form (as in EVM logs and Merkle leaves) of a TRON address `tron_address` accepts."""
    from tronpy import keys

    return "0x" + keys.to_tvm_address(tron_address(value)).hex()


def _fail_at(reason: str, *subpath: str | int) -> None:
    """Raise a validation error at `subpath` below the field or model being validated."""
    raise PydanticCustomError("config", "{reason}", {"reason": reason, "subpath": subpath})


def _unique(items: tuple[Any, ...], attr: str, what: str) -> None:
    """Fail at the first item whose `attr` repeats an earlier one."""
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if (key := getattr(item, attr)) in seen:
            _fail_at(f"duplicate {what} {key!r}", i, attr)
        seen.add(key)


def _quoted(value: Any) -> Any:
    """Reject an address that YAML has read as a number (an unquoted 0x...)."""
    if isinstance(value, int) and not isinstance(value, bool):
        _fail_at("put the address in quotes: YAML reads an unquoted 0x... as a number")
    return value


def checksummed(address: str) -> str:
    """The EIP-55 form of a 0x address: a hex letter is upper case where its nibble of keccak256 of the
    lower-case hex is 8 or more. (By hand, not eth_utils': importing eth_utils costs a start 0.1 s.)"""
    digits = address[2:].lower()
    nibbles = keccak(digits.encode()).hex()
    return "0x" + "".join(d.upper() if int(n, 16) >= 8 else d for d, n in zip(digits, nibbles, strict=False))


def _evm_address(value: str) -> str:
    """Check an EVM address (EIP-55 when mixed case) and return it lower-case."""
    if not (value.startswith("0x") and len(value) == 42 and _HEX.fullmatch(value[2:])):
        raise ValueError("not 0x followed by 40 hex digits")
    if value[2:] not in (value[2:].lower(), value[2:].upper()) and value != checksummed(value):
        raise ValueError("bad EIP-55 checksum; write the checksummed or the all-lower-case form")
    return value.lower()


def _tron_contract_address(value: str) -> str:
    """Check a TRON address (base58 `T...` or `41`+40 hex) and return it in base58."""
    if not (value.startswith("T") or (len(value) == 42 and value.startswith("41"))):
        raise ValueError("not a TRON address (base58 T... or 41 followed by 40 hex digits)")
    return tron_address(value)


def _url(value: str, schemes: tuple[str, ...] = ("http", "https", "ws", "wss"), paths: bool = False) -> str:
    """Check a URL with one of `schemes` and a host (or, if `paths`, a non-empty file path)."""
    if paths and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        if not value.strip():
            raise ValueError("must be an http(s) URL or a file path")
        return value
    parts = urlsplit(value)
    parts.port  # noqa: B018 - raises ValueError on a malformed port
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"not a {'/'.join(schemes)} URL with a host")
    return value


def _split_listen(listen: str) -> tuple[str, int]:
    """Split `host:port` (an IPv6 host in brackets); ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("not host:port with a port in 1-65535")
    return host, int(port)


NonEmpty = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Weight = Annotated[
    Decimal, BeforeValidator(lambda v: Decimal(str(v)) if isinstance(v, float) else v), Field(ge=0, allow_inf_nan=False)
]
ChainName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def _listed(value: Any) -> Any:
    """Require a non-empty list (checked before the items, so one bad item is one error)."""
    if isinstance(value, (list, tuple)) and not value:
        raise ValueError("must list at least one entry")
    return value


class _Model(BaseModel):
    """Frozen, no unknown keys, secrets masked in repr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __repr_args__(self):
        return [(name, _redact(name, value)) for name, value in super().__repr_args__()]


class Database(_Model):
    dsn: str = ""  # empty: an embedded Postgres under ./.indexer/
    read_dsn: str = ""  # the HTTP API's reads (e.g. a streaming replica); empty: `dsn`


class Http(_Model):
    listen: Annotated[str, AfterValidator(lambda v: _split_listen(v) and v)] = "127.0.0.1:9108"  # host:port

    @property
    def host(self) -> str:
        """The host (or IP) to listen on, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The TCP port to listen on."""
        return _split_listen(self.listen)[1]


class Epochs(_Model):
    genesis: Annotated[AwareDatetime, AfterValidator(lambda v: v.astimezone(UTC))] = datetime(2026, 1, 1, tzinfo=UTC)
    length_seconds: Annotated[int, Field(gt=0)] = 86400
    auto_close: bool = False  # `run` closes each epoch by itself (SPEC 9)
    close_after_seconds: Annotated[int, Field(ge=0)] = 3600  # time after an epoch's end for rewards to be recorded


class Verify(_Model):
    interval_seconds: Annotated[float, Field(ge=0)] = 3600.0  # `run` verifies this often; 0: never


def _exact_decimal(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, float) else value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(ge=0)]


class Loyalty(_Model):
    """The loyalty points boost program (SPEC section 6); the defaults are the seed's."""

    asset: str  # the staked asset the program follows (its decimals come from the contracts)
    start: date  # the program's first day (UTC)
    base_boost: ExactDecimal = Decimal("0.3")
    daily_rate: ExactDecimal = Decimal("0.005")  # multiplier growth per day staked
    multiplier_cap: ExactDecimal = Decimal("2.7")
    total_boost_cap: ExactDecimal = Decimal("3")
    boostable_per_token: ExactDecimal = Decimal("2")  # activity points per day the boost covers per token
    points_per_usd: ExactDecimal = Decimal("3")  # staking points per day per USD staked


class Validator(_Model):
    id: NonEmpty
    commission_bps: Annotated[int, Field(ge=0, le=10_000)] = 0


class Contract(_Model):
    name: NonEmpty
    kind: Literal["native", "erc20", "erc721"]
    version: Literal[1, 2]  # default 1 for erc721, required otherwise; every kind has a v2 (SPEC section 2)
    address: str
    start_block: Annotated[int, Field(ge=0)]
    asset: NonEmpty
    decimals: Annotated[int, Field(ge=0, le=77)]  # default 18, or 0 for erc721
    weight: Weight = Decimal(1)  # points per whole token (or per NFT)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        defaults = {"version": 1, "decimals": 0} if data.get("kind") == "erc721" else {"decimals": 18}
        return {**defaults, **data}


class EvmContract(Contract):
    address: Annotated[str, BeforeValidator(_quoted), AfterValidator(_evm_address)]


class TronContract(Contract):
    address: Annotated[str, BeforeValidator(_quoted), AfterValidator(_tron_contract_address)]


class _NodeChain(_Model):
    """Keys shared by the chains read from nodes (EVM and TRON)."""

    name: ChainName
    kind: str
    chain_id: int
    rpc: Annotated[tuple[Annotated[str, AfterValidator(_url)], ...], BeforeValidator(_listed)]
    confirmations: Annotated[int, Field(ge=0)] = 12
    poll_interval_seconds: Seconds = 2.0
    max_block_range: Annotated[int, Field(ge=1)] = 10_000  # the largest eth_getLogs range
    initial_block_range: Annotated[int, Field(ge=1)] = 10  # first eth_getLogs range; adapts from there
    target_logs_per_request: Annotated[int, Field(ge=1)] = 10_000  # the range grows while answers hold fewer
    request_timeout_seconds: Seconds = 30.0
    use_call_tracer: bool = True
    verify_log_blocks: bool = True  # check every log's block hash against the node's header at that height
    contracts: tuple[Contract, ...]
    _by_address: dict[str, Contract] = PrivateAttr(default_factory=dict)

    @field_validator("contracts")
    @classmethod
    def _unique_contracts(cls, contracts: tuple[Contract, ...]) -> tuple[Contract, ...]:
        _unique(contracts, "address", "contract address")
        _unique(contracts, "name", "contract name")
        return contracts

    @model_validator(mode="after")
    def _ranges(self) -> _NodeChain:
        if "initial_block_range" in self.model_fields_set and self.initial_block_range > self.max_block_range:
            _fail_at(f"must not exceed max_block_range ({self.max_block_range})", "initial_block_range")
        return self

    def model_post_init(self, context: Any) -> None:
        self._by_address.update((c.address, c) for c in self.contracts)

    def _key(self, address: str) -> str:
        return address.lower()

    def contract_for(self, address: str) -> Contract | None:
        """The configured contract at `address` (any accepted spelling), or None."""
        return self._by_address.get(self._key(address))

    @property
    def addresses(self) -> tuple[str, ...]:
        """The contracts' canonical addresses, in config order."""
        return tuple(c.address for c in self.contracts)

    @property
    def start_block(self) -> int:
        """The earliest block any contract of this chain needs."""
        return min(c.start_block for c in self.contracts)


class EvmChain(_NodeChain):
    kind: Literal["evm"]
    chain_id: Annotated[int, Field(gt=0)]
    contracts: Annotated[tuple[EvmContract, ...], BeforeValidator(_listed)]
    # the largest answer read from a node: a larger one is refused unread and its log range halved
    max_response_bytes: Annotated[int, Field(ge=1 << 20)] = 64 << 20


class TronChain(_NodeChain):
    kind: Literal["tron"]
    chain_id: Annotated[int, Field(gt=0)] = TRON_MAINNET_CHAIN_ID
    contracts: Annotated[tuple[TronContract, ...], BeforeValidator(_listed)]
    api_key: str | None = Field(default=None, repr=False)  # TronGrid key: a secret

    def _key(self, address: str) -> str:
        try:
            return tron_address(address)
        except ValueError:
            return ""


class SocialChain(_Model):
    name: ChainName
    kind: Literal["social"]
    url: Annotated[str, AfterValidator(lambda v: _url(v, ("http", "https"), paths=True))]  # or a file path
    poll_interval_seconds: Seconds = 30.0
    # records dated up to this long before a poll are still folded in their place; older ones rebuild
    settle_seconds: Annotated[int, Field(ge=0)] = 120
    asset: NonEmpty = "SOCIAL"
    decimals: Annotated[int, Field(ge=0, le=77)] = 0
    weight: Weight = Decimal(1)


Chain = Annotated[EvmChain | TronChain | SocialChain, Field(discriminator="kind")]


class Config(_Model):
    database: Database = Database()
    http: Http = Http()
    epochs: Epochs = Epochs()
    verify: Verify = Verify()
    validators: tuple[Validator, ...] = ()  # known validator ids
    loyalty: Loyalty | None = None
    chains: Annotated[tuple[Chain, ...], BeforeValidator(_listed)]

    @field_validator("validators")
    @classmethod
    def _unique_validators(cls, validators: tuple[Validator, ...]) -> tuple[Validator, ...]:
        _unique(validators, "id", "validator id")
        return validators

    @field_validator("chains")
    @classmethod
    def _unique_chains(cls, chains: tuple[Any, ...]) -> tuple[Any, ...]:
        _unique(chains, "name", "chain name")
        return chains

    def chain(self, name: str) -> EvmChain | TronChain | SocialChain:
        """The chain called `name`; ConfigError naming the configured ones if there is none."""
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise ConfigError(f"unknown chain {name!r} (configured: {', '.join(c.name for c in self.chains)})")

    def redacted(self) -> dict[str, Any]:
        """The config as JSON-able data with secrets (api keys, URL credentials) masked."""

        def mask(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: _redact(k, mask(v)) for k, v in node.items()}
            return [mask(v) for v in node] if isinstance(node, list) else node

        return mask(self.model_dump(mode="json"))


_REASONS = {
    "missing": "required field missing",
    "tuple_type": "must be a list",
    "string_pattern_mismatch": "a chain name is lower-case letters, digits, '_' or '-', "
    "starting with a letter or digit, at most 63 characters",
}
_KEYS_OF = {
    "database": Database,
    "http": Http,
    "epochs": Epochs,
    "loyalty": Loyalty,
    "validators": Validator,
    "contracts": Contract,
    "evm": EvmChain,
    "tron": TronChain,
    "social": SocialChain,
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key.value!r}", key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _join(path: str, part: Any) -> str:
    """Extend a dotted path with a key or a list index."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def _expand(node: Any, environ: Mapping[str, str], path: str, errors: list[str]) -> Any:
    """Expand `${VAR}`, `${VAR:-default}` and `$${` in every string scalar below `node`."""
    if isinstance(node, Mapping):
        return {k: _expand(v, environ, _join(path, k), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, environ, _join(path, i), errors) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        if match.group(1) is None or not (body := _ENV_BODY.fullmatch(match.group(1))):
            raise ValueError(f"malformed {match.group(0)!r}: write ${{NAME}} or ${{NAME:-default}}")
        name, default = body.groups()
        if environ.get(name) or (name in environ and default is None):
            return environ[name]
        if default is None:
            raise ValueError(f"environment variable {name} is not set (or write ${{{name}:-default}})")
        return default

    try:
        return _ENV.sub(substitute, node)
    except ValueError as exc:
        errors.append(f"{path or '<top level>'}: {exc}")
        return node


def _describe(err: Mapping[str, Any]) -> str:
    """One `path: reason` for a pydantic error, with the chain union's tag left out of the path."""
    raw, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    loc = [p for i, p in enumerate(raw) if not (i == 2 and raw[0] == "chains" and p in CHAIN_KINDS)]
    if kind == "config":
        loc, reason = loc + list(ctx["subpath"]), ctx["reason"]
    elif kind in _REASONS:
        reason = _REASONS[kind]
    elif kind == "extra_forbidden":
        parent = next((p for p in reversed(raw[:-1]) if isinstance(p, str)), "")
        reason = f"unknown key (allowed: {', '.join(_KEYS_OF.get(parent, Config).model_fields)})"
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        loc.append("kind")
        got = f"unknown kind {ctx['tag']!r}" if "tag" in ctx else "required field missing"
        reason = f"{got} (one of: {', '.join(CHAIN_KINDS)})"
    else:
        msg = str(ctx["error"]) if kind == "value_error" else err["msg"][:1].lower() + err["msg"][1:]
        value, name = err.get("input"), next((p for p in reversed(loc) if isinstance(p, str)), "")
        secret = isinstance(value, (dict, list)) or name in ("api_key", "dsn")
        reason = msg if secret else f"{msg} (got {redact_url(value) if isinstance(value, str) else value!r})"
    path = ""
    for part in loc:
        path = _join(path, part)
    return f"{path or '<top level>'}: {reason}"


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate already-loaded config data (no `${VAR}` expansion); ConfigError names every bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, not {type(data).__name__}")
    try:
        return Config.model_validate(dict(data))
    except ValidationError as exc:
        reasons = "; ".join(_describe(e) for e in exc.errors(include_url=False))
        raise ConfigError(f"{source}: {reasons}".replace("\n", " ")) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read a YAML config, expand `${VAR}` / `${VAR:-default}` in its strings and validate it."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{source}: cannot read the file: {reason}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "invalid YAML"
        if (context := getattr(exc, "context", None)) and (start := getattr(exc, "context_mark", None)):
            problem += f" ({context} started at line {start.line + 1})"
        raise ConfigError(f"{source}: {where}: {problem}".replace("\n", " ")) from None
    if data is None:
        raise ConfigError(f"{source}: the file is empty")
    errors: list[str] = []
    if isinstance(data, Mapping):
        data = _expand(data, os.environ if environ is None else environ, "", errors)
    if errors:
        raise ConfigError(f"{source}: {'; '.join(errors)}")
    return parse_config(data, source)
