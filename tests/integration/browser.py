"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol with aiohttp's websocket client: open a
page, evaluate JavaScript in it, take a screenshot. Started with a new empty profile and without the background
services that would reach for the network (this machine's network is closed)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1400,1300",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    pass


class Browser:
    """`async with Browser() as b: await b.open(url); await b.evaluate("1 + 1"); await b.screenshot(path)`."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        if shutil.which(executable) is None:
            raise BrowserError(f"{executable} is not installed (scripts/test.sh installs Debian's chromium)")
        self._executable = executable
        self._profile = Path(tempfile.mkdtemp(prefix="tenderhub-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Self:
        log = (self._profile / "chromium.log").open("wb")
        self._process = subprocess.Popen(
            [self._executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        port = await self._devtools_port(30)
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            raise BrowserError(f"no page target among {targets}")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _devtools_port(self, timeout: float) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrowserError(f"chromium exited with {self._process.returncode}: {self._log_tail()}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            await asyncio.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        path = self._profile / "chromium.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are skipped)."""
        if self._ws is None:
            raise BrowserError("the browser is not started")
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(self._ws.receive(), 60)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"DevTools connection ended: {message.type}")
            data = json.loads(message.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise BrowserError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result

    async def open(self, url: str) -> None:
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        await self.wait_for(loaded, 30, f"{url} loaded")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Until `expression` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        raise BrowserError(f"{what}: not within {timeout:.0f} s (last value {value!r})")

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
