"""JSON-RPC over HTTP (aiohttp, msgspec), with failover across URLs and backoff.

Transport failures (connection errors, timeouts, HTTP 429/5xx, malformed JSON)
rotate to the next URL and retry with jittered exponential backoff; a failing
URL is skipped for a cool-down. Error objects answered by a node are not
transport failures: they are raised as `JsonRpcError` for the caller to judge.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from indexer import clock
from indexer.errors import RpcError
from indexer.redact import redact_url

Observer = Callable[[str, str, float, str | None], None]  # (method, redacted url, seconds, error kind)


class JsonRpcError(Exception):
    """A node answered with a JSON-RPC error object."""

    def __init__(self, code: int | None, message: str, method: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.code = code
        self.message = message
        self.method = method


class TransportError(Exception):
    """The request did not get a well-formed answer; another URL may do better."""


class RateLimited(Exception):
    """A node answered with a rate-limit error object."""


class AnswerTooLarge(Exception):
    """An answer longer than the client reads (`max_response_bytes`): refused unread, as a node refuses a range."""


TOO_LARGE_CODE = -32005  # the code providers give a result too large to answer (with a message `log_range` knows)
DEFAULT_MAX_RESPONSE_BYTES = 64 << 20


_RATE_LIMIT_MESSAGES = ("rate limit", "too many requests", "request limit", "exceeded the quota", "capacity")


class RpcClient:
    """One chain's nodes, tried in order with failover."""

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        *,
        timeout: float = 30.0,
        attempts: int = 6,
        cooldown: float = 30.0,
        max_backoff: float = 5.0,
        observer: Observer | None = None,
        providers: Sequence[Any] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """`providers` (one per URL) replace the HTTP providers: the simulation's nodes. An answer longer than
        `max_response_bytes` is not read: each of its calls gets a JsonRpcError saying the response is too large."""
        if not urls:
            raise ValueError(f"chain {chain}: no RPC URL")
        self.chain = chain
        self._urls = list(urls)
        self._labels = [redact_url(u) for u in urls]
        self._providers = (
            list(providers) if providers is not None else [HttpNode(u, timeout, max_response_bytes) for u in urls]
        )
        self._unhealthy_until = [0.0] * len(urls)
        self._current = 0
        self._attempts = attempts
        self._cooldown = cooldown
        self._max_backoff = max_backoff
        self._observer = observer
        self._ids = itertools.count(1)

    @property
    def url_labels(self) -> list[str]:
        """The URLs with secrets redacted, for logs and metrics."""
        return list(self._labels)

    async def request(self, method: str, params: list[Any]) -> Any:
        """The result of one call; raises JsonRpcError for an error object, RpcError when every retry failed."""
        (answer,) = await self.batch([(method, params)])
        if isinstance(answer, JsonRpcError):
            raise answer
        return answer

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results of several calls in one HTTP request, in order; an item that failed is its JsonRpcError."""
        if not calls:
            return []
        label = calls[0][0] if len(calls) == 1 else f"batch:{calls[0][0]}"
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(multiplier=0.05, max=self._max_backoff, jitter=0.1),
                retry=retry_if_exception_type(TransportError),
                reraise=True,
                sleep=_sleep,
            ):
                with attempt:
                    return await self._send_once(label, calls)
        except TransportError as exc:
            raise RpcError(f"chain {self.chain}: {label} failed on every RPC URL ({exc})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, label: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        index = self._pick_url()
        provider = self._providers[index]
        started = time.perf_counter()
        error_kind: str | None = None
        try:
            if len(calls) == 1:
                raw = [await provider.make_request(calls[0][0], calls[0][1])]  # type: ignore[arg-type]
            else:
                raw = await provider.make_batch_request(list(calls))  # type: ignore[arg-type]
            results = _unpack(raw, calls)
            if any(isinstance(result, JsonRpcError) for result in results):
                error_kind = "error_object"  # answered, but the node refused a call; the caller decides what next
            return results
        except AnswerTooLarge as exc:  # not the node's failure: the caller asks for less (a smaller log range)
            error_kind = "too_large"
            return [JsonRpcError(TOO_LARGE_CODE, f"response too large: {exc}", method) for method, _ in calls]
        # Chained causes are dropped (`from None`): aiohttp's exceptions carry the raw URL, secrets and all.
        except RateLimited as exc:
            error_kind = "rate_limited"
            raise self._failed(index, f"rate limited by {self._labels[index]}: {exc}") from None
        except TimeoutError:  # before OSError, of which it is a subclass
            error_kind = "timeout"
            raise self._failed(index, f"timeout from {self._labels[index]}") from None
        except aiohttp.ClientResponseError as exc:
            error_kind = f"http_{exc.status}"
            raise self._failed(index, f"HTTP {exc.status} from {self._labels[index]}") from None
        except (aiohttp.ClientError, OSError) as exc:
            error_kind = "connection"
            raise self._failed(index, f"{type(exc).__name__} from {self._labels[index]}") from None
        except (ValueError, TypeError, KeyError) as exc:  # undecodable or malformed answer
            error_kind = "malformed"
            raise self._failed(index, f"malformed answer from {self._labels[index]}: {exc}") from None
        finally:
            if self._observer is not None:
                self._observer(label, self._labels[index], time.perf_counter() - started, error_kind)

    def _pick_url(self) -> int:
        now = clock.current().monotonic()
        for offset in range(len(self._urls)):
            index = (self._current + offset) % len(self._urls)
            if self._unhealthy_until[index] <= now:
                self._current = index
                return index
        # every URL is cooling down: use the one whose cool-down ends first
        self._current = min(range(len(self._urls)), key=self._unhealthy_until.__getitem__)
        return self._current

    def _failed(self, index: int, reason: str) -> TransportError:
        self._unhealthy_until[index] = clock.current().monotonic() + self._cooldown
        self._current = (index + 1) % len(self._urls)
        return TransportError(reason)

    async def close(self) -> None:
        """Close every HTTP session."""
        for provider in self._providers:
            await provider.disconnect()


class HttpNode:
    """One node URL: JSON-RPC requests POSTed on a keep-alive session, answers parsed by msgspec.

    Written here rather than taken from web3 (whose AsyncHTTPProvider it replaces): the provider's
    import alone costs a start-up about half a second (eth_account, py_ecc), and its standard-library
    JSON is the slowest step of a backfill after COPY. msgspec rather than orjson: it builds the Python
    objects straight from the text (orjson's parser first builds a document of its own, about 1.7 times
    the body: 90 MB more at the peak of an 80,000-log answer), is faster by a quarter here, and keeps
    integers beyond 64 bits exact (orjson turns them into floats). Errors are left as aiohttp and msgspec
    raise them (HTTP status, timeout, connection, malformed body: a ValueError) for `RpcClient` to sort out.
    """

    def __init__(self, url: str, timeout: float, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def make_request(self, method: str, params: Any) -> Any:
        return await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})

    async def make_batch_request(self, calls: Sequence[tuple[str, Any]]) -> Any:
        """The answers in the order of `calls` (a node may answer a batch in any order: matched by id)."""
        requests = [{"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": p} for m, p in calls]
        answer = await self._post(requests)
        if isinstance(answer, list):
            by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
            if len(by_id) == len(requests) and all(r["id"] in by_id for r in requests):
                return [by_id[r["id"]] for r in requests]
        return answer  # as it came: `_unpack` says what is wrong with it

    async def _post(self, body: Any) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"Content-Type": "application/json"})
        async with self._session.post(self.url, data=_ENCODER.encode(body)) as response:
            response.raise_for_status()
            return _DECODER.decode(await _body(response, self.max_bytes))

    async def disconnect(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_ENCODER, _DECODER = msgspec.json.Encoder(), msgspec.json.Decoder()


async def _body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | bytearray:
    """The whole body, read into one buffer of the announced length: `read()` gathers the chunks and
    joins them, holding a large answer (tens of MB of logs) twice at once. A compressed body (whose
    length is the compressed one) or one without a length is read as it comes. A body longer than
    `max_bytes` raises AnswerTooLarge: refused by its announced length before any of it is read, else
    as soon as that much has come (a node without a result limit may answer one range with millions
    of logs, some gigabytes once parsed)."""
    length = response.content_length
    if not length or response.headers.get("Content-Encoding", "identity").lower() != "identity":
        chunks, size = [], 0
        async for chunk in response.content.iter_any():  # decompressed as it comes
            size += len(chunk)
            if size > max_bytes:
                raise AnswerTooLarge(f"the answer exceeds max_response_bytes ({max_bytes}) after {size} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    if length > max_bytes:
        raise AnswerTooLarge(f"the answer of {length} bytes exceeds max_response_bytes ({max_bytes})")
    body = bytearray(length)
    view, at = memoryview(body), 0
    async for chunk in response.content.iter_any():
        if at + len(chunk) > length:
            raise ValueError(f"the body is longer than its Content-Length ({length} bytes)")
        view[at : at + len(chunk)] = chunk
        at += len(chunk)
    if at != length:
        raise ValueError(f"the body ended after {at} of its {length} bytes")
    return body


async def _sleep(seconds: float) -> None:
    """The retry waits, on the current clock (a simulation's, in a simulation)."""
    await clock.current().sleep(seconds)


def _unpack(raw: Any, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """Results from JSON-RPC response objects; raises ValueError when they do not fit the calls."""
    if isinstance(raw, dict) and len(calls) > 1:  # a batch answered by one error object
        raise ValueError(f"batch answered with a single object: {json.dumps(raw)[:200]}")
    if not isinstance(raw, list) or len(raw) != len(calls):
        raise ValueError(f"expected {len(calls)} answers, got {type(raw).__name__}")
    results: list[Any] = []
    for (method, _), item in zip(calls, raw, strict=True):
        if not isinstance(item, dict):
            raise ValueError(f"{method}: answer is not an object")
        if "error" in item and item["error"] is not None:
            error = item["error"]
            if not isinstance(error, dict):
                raise ValueError(f"{method}: error is not an object")
            message = str(error.get("message", ""))
            if error.get("code") == 429 or any(m in message.lower() for m in _RATE_LIMIT_MESSAGES):
                raise RateLimited(message)
            results.append(JsonRpcError(error.get("code"), message, method))
        elif "result" in item:
            results.append(item["result"])
        else:
            raise ValueError(f"{method}: answer has neither result nor error")
    return results
