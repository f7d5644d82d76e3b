"""The console's pages and files as HTTP sees them: headers, labels, the first-run command, nothing foreign."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.app.bridge import Bridge
from bridge.config import load_config
from bridge.web import make_app
from bridge.web.console.pages import POLICY, first_admin_command
from tests.daemon import write_config
from tests.e2e.harness import add_agent, make_bridge

PAGES = ["/", "/login", "/conversations/42", "/admin/agents", "/admin/health", "/admin/audit"]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def served(
    tmp_path: Path, aiohttp_client: Callable[[web.Application], Awaitable[Client]]
) -> AsyncIterator[tuple[Bridge, Client]]:
    bridge = await make_bridge(tmp_path)
    try:
        yield bridge, await aiohttp_client(make_app(bridge))
    finally:
        await bridge.close()


class Controls(HTMLParser):
    """The form controls of a page, the ids labels point at, and every URL it names."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("input", "select", "textarea"):
            self.controls.append(attributes)
        if tag == "label" and attributes.get("for"):
            self.labelled.add(str(attributes["for"]))
        for key in ("src", "href", "action"):
            value = attributes.get(key)
            if value is not None:
                self.urls.append(value)
        if tag == "style" or "style" in attributes or any(k.startswith("on") for k in attributes):
            self.inline.append(tag)
        if tag == "script" and "src" not in attributes:
            self.inline.append("script")


async def test_every_page_is_strict_and_every_control_has_a_label(served: tuple[Bridge, Client]) -> None:
    _, client = served
    for path in PAGES:
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == POLICY
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        page = Controls()
        page.feed(await response.text())
        assert page.inline == [], (path, page.inline)
        for control in page.controls:
            assert control.get("id") in page.labelled or control.get("aria-label"), (path, control)
        # Only this origin: absolute paths or fragments, never a scheme or a host.
        assert all(url.startswith(("/", "#")) and not url.startswith("//") for url in page.urls), (path, page.urls)
    assert "frame-ancestors 'none'" in POLICY and "unsafe-inline" not in POLICY


async def test_the_files_are_served_with_their_types_and_the_policy(served: tuple[Bridge, Client]) -> None:
    _, client = served
    for name, kind in (("common.js", "text/javascript"), ("inbox.js", "text/javascript"), ("console.css", "text/css")):
        response = await client.get(f"/static/console/{name}")
        assert response.status == 200 and response.content_type == kind
        assert response.headers["Content-Security-Policy"] == POLICY
    for missing in ("nope.js", "..%2fpages.py", "__init__.py"):
        assert (await client.get(f"/static/console/{missing}")).status == 404
    script = await (await client.get("/static/console/common.js")).text()
    assert "innerHTML" not in script and "eval(" not in script
    assert not re.search(r"https?://", script)


async def test_the_pages_name_each_channel_and_its_reply_window(served: tuple[Bridge, Client]) -> None:
    _, client = served
    html = await (await client.get("/")).text()
    data = re.search(r"data-channels='([^']*)'", html)
    assert data is not None
    assert '"memory": {"label": "Memory", "reply_window": null}' in data.group(1)
    assert '"console": {"label": "Console"' in data.group(1)


async def test_the_login_page_names_the_first_admin_command_only_while_there_is_no_agent(
    served: tuple[Bridge, Client],
) -> None:
    bridge, client = served
    html = await (await client.get("/login")).text()
    assert 'id="first-admin-command"' in html
    assert "agent add admin --channel console --role admin" in html
    await add_agent(bridge, "ann", "memory:ann-phone")
    html = await (await client.get("/login")).text()
    assert 'id="first-admin-command"' not in html and 'id="login-form"' in html


def test_the_command_is_the_one_that_works_from_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAREBRIDGE_CONFIG", raising=False)
    embedded = load_config(None)
    command = first_admin_command(embedded)
    assert command.endswith(" agent add admin --channel console --role admin")
    script = Path(sys.executable).parent / "carebridge"
    assert command.startswith(str(script) if script.exists() else "carebridge")
    here = load_config(write_config(tmp_path))
    assert " -c " not in first_admin_command(here)  # ./bridge.toml is found by the command itself
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    other = load_config(write_config(elsewhere))
    assert first_admin_command(other).endswith(f" -c {elsewhere / 'bridge.toml'}")


def test_page_templates_ship_in_the_package() -> None:
    root = Path(__file__).resolve().parents[2] / "bridge" / "web" / "console"
    templates = {p.name for p in (root / "templates").glob("*.html")}
    scripts = {p.stem for p in (root / "static").glob("*.js")}
    # Each page has its script of the same name (base.html loads /static/console/<page>.js).
    assert {name.removesuffix(".html") for name in templates - {"base.html"}} <= scripts
