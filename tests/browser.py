"""A real headless Chromium for the tests, driven over its own DevTools protocol (a
websocket, with aiohttp: the test extra has it): open a page, run a script in it, click a
point as a mouse would. No browser installed: the test skips and says how to get one
(`.ci/run` installs Debian's chromium)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# Collects what would be a console error: an exception, a rejected promise, a resource that
# did not load, console.error. Installed before a page's own scripts run (with Page.enable
# and Page.addScriptToEvaluateOnNewDocument); read back from window.__errors.
WATCH_ERRORS = """
window.__errors = [];
addEventListener("error", e => __errors.push(String(e.message || e.target?.src || e.type)),
                 true);
addEventListener("unhandledrejection", e => __errors.push(String(e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => { __errors.push(args.map(String).join(" ")); consoleError(...args); };
"""

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# the flags this machine's closed network needs (see the env notes), and root's no-sandbox
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1280,900")


def chromium() -> str:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium to open the page in: install Debian's chromium package "
                "(apt-get install chromium), as .ci/run does")


class Page:
    """One tab, over its DevTools websocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=20)
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"the page threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def open(self, path: Path | str) -> None:
        """A file, or an address (a str: as it is)."""
        url = path if isinstance(path, str) else path.resolve().as_uri()
        await self.send("Page.navigate", url=url)
        for _ in range(200):
            if await self.evaluate("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} did not finish loading")

    async def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                            clickCount=1)


async def with_page(path: Path | str, test: Any) -> Any:
    """Start Chromium, open `path` (a file, or an address) in it, run `await test(page)`,
    stop Chromium."""
    binary = chromium()
    profile = tempfile.mkdtemp(prefix="msshop-chromium-")
    try:
        browser = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}",
                                    "about:blank"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            port = _devtools_port(Path(profile), browser)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    targets = await answer.json()
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(url, max_msg_size=0) as socket:
                    page = Page(socket)
                    await page.open(path)
                    return await test(page)
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait(5)
    finally:
        remove(Path(profile))


def remove(profile: Path, attempts: int = 50) -> None:
    """Chromium's helper processes may still write into its profile for a moment after the
    browser has exited ("Directory not empty"): try again, for up to ~5 s."""
    for _ in range(attempts - 1):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, browser: subprocess.Popen[bytes]) -> int:
    """The port Chromium chose: the first line of DevToolsActivePort in its profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise AssertionError(f"Chromium exited with {browser.returncode} at start")
        try:
            return int(marker.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            time.sleep(0.05)
    raise AssertionError("Chromium did not open its DevTools port within 30 s")
