"""Console processes and a headless Chromium for the console tests.

``liteq console`` runs as a real process on 127.0.0.1 and a free port, stopped by pid.
The browser is Chromium from the OS packages, driven by Playwright (never
``playwright install``). Without them the browser tests skip, except under
``CI=true``, where they fail (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _pythonpath
from tests.redis_fixtures import free_port

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> tuple[Any, str]:
    """Playwright's sync API and the Chromium binary, or skip (fail under CI=true)."""
    missing = None
    binary = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed"
    if binary is None:
        missing = "Chromium is not installed (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}, and CI=true needs the console browser tests")
        pytest.skip(missing)
    return sync_playwright, str(binary)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a test module (Playwright gives it a fresh temporary
    profile); ``browser.new_page()`` opens a page in a context of its own (no cookies)."""
    sync_playwright, binary = require_browser()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS,
                                              headless=True)
        try:
            yield instance
        finally:
            instance.close()


class ConsoleProcess:
    """``liteq console`` (or ``liteq metrics``) on 127.0.0.1, stopped by pid."""

    def __init__(self, cwd: Path, *args: str, command: str = "console") -> None:
        self.port = free_port()
        self.log = cwd / f"{command}-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "liteq", command, *args, "--port", str(self.port)],
                cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": _pythonpath()})
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> ConsoleProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the console exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the console did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def start_console(tmp_path: Path) -> Iterator[Any]:
    started: list[ConsoleProcess] = []

    def start(cwd: Path, *args: str, command: str = "console") -> ConsoleProcess:
        console = ConsoleProcess(cwd, *args, command=command)
        started.append(console)
        return console.wait_ready()

    yield start
    for console in started:
        console.stop()
