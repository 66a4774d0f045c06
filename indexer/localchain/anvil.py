"""Start and stop a local anvil node (from the npm package @foundry-rs/anvil) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

CHAIN_ID = 31337
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 15.0
REPO_ROOT = Path(__file__).resolve().parents[2]
NPM_ANVIL = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def anvil_binary() -> Path:
    """Path of the anvil executable: $ANVIL_BIN, then the npm-installed one, then `anvil` on PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise RuntimeError(f"ANVIL_BIN={env} does not exist")
        return path
    if NPM_ANVIL.is_file():
        return NPM_ANVIL
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise RuntimeError(f"anvil not found: run `npm ci` in {REPO_ROOT} (or set ANVIL_BIN)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _rpc(url: str, method: str, params: list[object], timeout: float = 2.0) -> object:
    """One synchronous JSON-RPC call; returns the result or raises."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


class Anvil:
    """A local anvil process (chain id 31337, unlocked dev accounts); use as `with Anvil() as node:`."""

    def __init__(self, port: int | None = None, *, accounts: int = 20, extra_args: Sequence[str] = ()) -> None:
        """Configure (but do not start) a node on 127.0.0.1:`port` (a free port when None)."""
        self.port = port
        self.accounts = accounts
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """HTTP JSON-RPC URL of the node."""
        if self.port is None:
            raise RuntimeError("anvil is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Anvil:
        """Spawn anvil and wait until it answers `eth_chainId` (15 s at most)."""
        if self._process is not None:
            raise RuntimeError("anvil is already started")
        if self.port is None:
            self.port = free_port()
        command = [
            str(anvil_binary()),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--chain-id",
            str(CHAIN_ID),
            "--accounts",
            str(self.accounts),
            "--silent",
            *self.extra_args,
        ]
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                self._fail(f"anvil exited with code {self._process.returncode} on {self.url}")
            try:
                if int(str(_rpc(self.url, "eth_chainId", [], timeout=1.0)), 16) == CHAIN_ID:
                    return self
            except (OSError, urllib.error.URLError, ValueError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                self._fail(f"anvil did not answer on {self.url} within {START_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.05)

    def _fail(self, message: str) -> NoReturn:
        """Stop the process and raise RuntimeError with anvil's stderr."""
        stderr = self._read_stderr()
        self.stop()
        raise RuntimeError(f"{message}; stderr: {stderr or '(empty)'}")

    def _read_stderr(self) -> str:
        """What anvil wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit within 5 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Anvil:
        """Start the node."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the node."""
        self.stop()
