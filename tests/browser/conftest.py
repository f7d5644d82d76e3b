"""The console and the website chat in a real browser: Playwright driving Debian's Chromium.

Every test runs the real daemon (``tests/daemon.py``) with the website chat
on, creates its agents with the real ``carebridge agent add`` and logs them
in with real TOTP codes. Each browser context is a fresh profile (one
person: an agent or a customer). Screenshots go to the test's ``tmp_path``;
with ``CAREBRIDGE_SCREENSHOTS=DIR`` they are also written to DIR (the
README's pictures are made that way: ``docs/screenshots``).

Chromium is Debian's (``apt-get install -y chromium``, /usr/bin/chromium):
Playwright's own browser download cannot work here, so it is never run. A
missing browser fails the tests, it does not skip them.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pyotp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.daemon import DaemonProcess, run_cli, write_config

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "correct horse battery staple"
SHOTS = os.environ.get("CAREBRIDGE_SCREENSHOTS", "")
WEBCHAT = "[channels.webchat]\n"


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; missing, the test fails (it is not skipped)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium, closed after the test."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Page, directory: Path, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot of ``page`` under the test's folder (and under ``$CAREBRIDGE_SCREENSHOTS``)."""
    path = directory / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    if SHOTS:
        await asyncio.to_thread(_keep, path, Path(SHOTS))
    return path


def _keep(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / path.name)


@dataclass
class Desk:
    """A running daemon, its agents' TOTP secrets, and a browser to open people in."""

    daemon: DaemonProcess
    config: Path
    browser: Browser
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    contexts: list[BrowserContext] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return self.daemon.url(path)

    async def add_agent(
        self,
        name: str,
        *,
        role: str = "agent",
        channel: str = "console",
        queues: tuple[str, ...] = (),
        capacity: int = 5,
    ) -> str:
        """``carebridge agent add`` as an operator runs it; return the TOTP secret."""
        args = ["agent", "add", name, "--channel", channel, "--role", role, "--capacity", str(capacity)]
        args += ["--password-stdin", "-c", str(self.config)]
        for queue in queues:
            args += ["--queue", queue]
        code, out, err = await run_cli(*args, stdin=f"{PASSWORD}\n".encode(), env=self.env)
        assert code == 0, err
        uri = next(line for line in out.splitlines() if line.startswith("otpauth://"))
        secret = pyotp.parse_uri(uri).secret
        self.secrets[name] = secret
        return secret

    def code(self, name: str) -> str:
        """A code the agent has not used yet: a code is accepted once, and ±1 step is allowed."""
        offsets = (0, 30, -30)
        used = self.used.get(name, 0)
        if used >= len(offsets):
            raise AssertionError(f"{name} logged in more often than this test allows")
        self.used[name] = used + 1
        return pyotp.TOTP(self.secrets[name]).at(time.time() + offsets[used])

    async def person(self, **options: Any) -> Page:
        """A fresh browser profile (one person) and a page in it."""
        context = await self.browser.new_context(base_url=self.url(""), **options)
        self.contexts.append(context)
        return await context.new_page()

    async def agent(self, name: str, **options: Any) -> Page:
        """An agent logged in over the API (the cookie lands in their profile), on the inbox."""
        page = await self.person(**options)
        answer = await page.request.post(
            "/api/login", data={"username": name, "password": PASSWORD, "totp": self.code(name)}
        )
        assert answer.status == 200, await answer.text()
        await page.goto("/")
        await page.locator("#me-name").filter(has_text=name).wait_for()
        return page

    async def customer(self, text: str, *, name: str = "", email: str = "", **options: Any) -> Page:
        """A customer on /chat who sends ``text`` (after giving a name and an email, if any)."""
        page = await self.person(**options)
        await page.goto("/chat")
        if name:
            await page.get_by_label("Your name (optional)").fill(name)
        if email:
            await page.get_by_label("Your email address (optional)").fill(email)
        await say(page, text)
        return page


async def say(page: Page, text: str) -> None:
    """Type in the chat's message box and press Enter; wait until it is shown as stored."""
    box = page.get_by_label("Your message")
    await box.fill(text)
    await box.press("Enter")
    await page.locator("#transcript li.msg.in:not(.pending)").filter(has_text=text).wait_for()


def conversation_link(page: Page, conversation_id: int) -> Any:
    """The inbox entry of a conversation."""
    return page.locator(f'#conversations a[data-conversation="{conversation_id}"]')


class MakeRunDaemon(DaemonProcess):
    """The daemon as ``make run`` starts it: ``.venv/bin/python`` in the directory of its configuration.

    A ``.venv`` link beside the test's configuration points at the running
    virtualenv, so the page shows the command exactly as a newcomer who ran
    ``make run`` sees it (``.venv/bin/carebridge agent add ...``).
    """

    def __init__(self, config: Path, **options: Any) -> None:
        super().__init__(config, **options)
        python = Path(sys.executable)
        link = config.parent / ".venv"
        link.symlink_to(python.parent.parent, target_is_directory=True)
        self.python = str(link / python.parent.name / python.name)

    async def spawn(self) -> None:
        with mock.patch.object(sys, "executable", self.python):
            await super().spawn()


@pytest.fixture
async def make_desk(tmp_path: Path, browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Desk]]]:
    """``await make_desk(section, env)``: the daemon with these channel sections started; stopped after the test."""
    desks: list[Desk] = []

    async def make(section: str = WEBCHAT, env: dict[str, str] | None = None) -> Desk:
        config = write_config(tmp_path, section)
        desk = Desk(await MakeRunDaemon(config, env=env).start(), config, browser, env or {})
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        for context in desk.contexts:
            await context.close()
        await desk.daemon.stop()
        assert desk.daemon.returncode == 0, desk.daemon.stderr
        assert "Traceback" not in desk.daemon.stderr, desk.daemon.stderr


@pytest.fixture
async def desk(make_desk: Callable[..., Awaitable[Desk]]) -> Desk:
    """The daemon with the website chat on (and no agent yet)."""
    return await make_desk(WEBCHAT)


#: What a page may load: only its own origin (checked by recording every request).
def same_origin(url: str, origin: str) -> bool:
    return url.startswith(origin + "/") or url == origin or bool(re.match(r"^(data|blob|about):", url))
