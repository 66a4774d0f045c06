"""The RPC client reads an answer whole however the node sends it: with a length, compressed, chunked, or cut short."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import msgspec
import pytest
from aiohttp import web

from indexer.chains.log_range import is_range_too_large
from indexer.chains.rpc import TOO_LARGE_CODE, AnswerTooLarge, HttpNode, JsonRpcError, RpcClient

LOGS = [{"address": "0x" + "ab" * 20, "data": "0x" + f"{i:064x}", "logIndex": hex(i)} for i in range(40_000)]


def answer(request_body: bytes) -> bytes:
    request = msgspec.json.decode(request_body)
    if isinstance(request, list):  # a batch: the logs for each call
        return msgspec.json.encode([{"jsonrpc": "2.0", "id": call["id"], "result": LOGS} for call in request])
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request["id"], "result": LOGS})


async def with_length(request: web.Request) -> web.Response:
    return web.Response(body=answer(await request.read()), content_type="application/json")


async def compressed(request: web.Request) -> web.Response:
    body = gzip.compress(answer(await request.read()))
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def chunked(request: web.Request) -> web.StreamResponse:
    body = answer(await request.read())
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for at in range(0, len(body), 65_536):
        await response.write(body[at : at + 65_536])
    await response.write_eof()
    return response


WIDE = 2**70 + 1  # beyond 64 bits: a double would make it 2**70


async def wide_number(request: web.Request) -> web.Response:
    request_id = msgspec.json.decode(await request.read())["id"]
    body = b'{"jsonrpc": "2.0", "id": %d, "result": {"balance": %d}}' % (request_id, WIDE)
    return web.Response(body=body, content_type="application/json")


async def cut_short(request: web.Request) -> web.StreamResponse:
    body = answer(await request.read())
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    request.transport.close()  # the connection drops half way
    return response


@pytest.fixture
async def node_url():
    app = web.Application()
    for path, handler in {
        "/length": with_length,
        "/gzip": compressed,
        "/chunked": chunked,
        "/cut": cut_short,
        "/wide": wide_number,
    }.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("path", ["/length", "/gzip", "/chunked"])
async def test_a_large_answer_is_read_whole_however_it_is_sent(node_url, path):
    node = HttpNode(node_url + path, timeout=10)
    try:
        result = await node.make_request("eth_getLogs", [])
    finally:
        await node.disconnect()
    assert result["result"] == LOGS


async def test_an_answer_cut_short_is_an_error_not_a_shorter_answer(node_url):
    node = HttpNode(node_url + "/cut", timeout=10)
    try:
        with pytest.raises((aiohttp.ClientError, ValueError)):
            await asyncio.wait_for(node.make_request("eth_getLogs", []), 10)
    finally:
        await node.disconnect()


async def test_a_number_beyond_64_bits_is_read_exact(node_url):
    node = HttpNode(node_url + "/wide", timeout=10)
    try:
        result = await node.make_request("eth_getBalance", [])
    finally:
        await node.disconnect()
    assert result["result"]["balance"] == WIDE and type(result["result"]["balance"]) is int


@pytest.mark.parametrize("path", ["/length", "/gzip", "/chunked"])
async def test_an_answer_beyond_the_limit_is_refused_however_it_is_sent(node_url, path):
    size = len(answer(b'{"id": 1}'))
    node = HttpNode(node_url + path, timeout=10, max_bytes=size - 1)
    try:
        with pytest.raises(AnswerTooLarge, match=f"exceeds max_response_bytes \\({size - 1}\\)"):
            await node.make_request("eth_getLogs", [])
    finally:
        await node.disconnect()
    exact = HttpNode(node_url + path, timeout=10, max_bytes=size)
    try:
        assert (await exact.make_request("eth_getLogs", []))["result"] == LOGS
    finally:
        await exact.disconnect()


async def test_a_refused_answer_is_a_range_too_large_for_every_call_and_no_failover(node_url):
    client = RpcClient("eth", [node_url + "/length", node_url + "/chunked"], timeout=10, max_response_bytes=1 << 20)
    try:
        answers = await client.batch([("eth_getLogs", []), ("eth_getBlockByNumber", ["0x1", False])])
    finally:
        await client.close()
    assert all(isinstance(a, JsonRpcError) and a.code == TOO_LARGE_CODE for a in answers)
    assert is_range_too_large(answers[0].message)  # what makes the EVM source halve its log range
    assert client.url_labels[0] == node_url + "/length" and client._current == 0  # the node is not blamed
