"""The README's plugin guide: its complete example plugin keeps the contract, and it uses only exported names.

The example is read from README.md and run as a module, against a fake of
the made-up Acme API it speaks, through the same contract suite every
built-in channel runs: a guide whose example breaks the contract would teach
the break.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import itertools
import json
import re
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import bridge
import bridge.testing
from bridge import Channel, SimulatedRequest
from bridge.testing import ChannelContract, FakePlatform, start_server

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
GUIDE = README[README.index("## Writing a plugin") : README.index("## Layout")]
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE, re.DOTALL)
[EXAMPLE] = [block for block in BLOCKS if block.startswith("# carebridge_acme/__init__.py")]


def load_example() -> types.ModuleType:
    module = types.ModuleType("readme_acme")
    exec(compile(EXAMPLE, "README.md:carebridge_acme", "exec"), module.__dict__)  # our own README, not input
    return module


ACME = load_example()
TOKEN = "t0k3n"
SECRET = "s3cr3t"


def test_the_guide_imports_only_what_bridge_and_its_test_kit_export() -> None:
    assert len(BLOCKS) >= 3
    for block in BLOCKS:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "bridge":
                assert {a.name for a in node.names} <= set(bridge.__all__), ast.unparse(node)
            elif isinstance(node, ast.ImportFrom) and node.module == "bridge.testing":
                assert {a.name for a in node.names} <= set(bridge.testing.__all__), ast.unparse(node)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge."):
                raise AssertionError(f"the guide imports a private module: {ast.unparse(node)}")
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("bridge.") for a in node.names), ast.unparse(node)


def test_the_example_registers_its_channel_through_the_hook() -> None:
    from bridge.plugins import make_plugin_manager

    registry = make_plugin_manager(load_entry_points=False, plugins=[("acme", ACME)])
    assert registry.channels["acme"] is ACME.AcmeChannel


class FakeAcme(FakePlatform):
    """The made-up Acme API of the guide: bearer token, ``GET /v1/me``, ``POST /v1/messages``."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = ""
        self.sent: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.app.router.add_get("/v1/me", self.me)
        self.app.router.add_post("/v1/messages", self.messages)

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "us"}, status=200 if self.authorized(request) else 401)

    async def messages(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        if not isinstance(body.get("text"), str) or not 0 < len(body["text"]) <= 1000:
            return web.json_response({"error": "text"}, status=400)
        sent = {**body, "id": f"acme-{next(self._ids)}"}
        self.sent.append(sent)
        return web.json_response({"id": sent["id"]})


class TestReadmeAcmeContract(ChannelContract):
    channel_class: type[Channel] = ACME.AcmeChannel
    recipients = ("user-1", "user-2")

    @pytest.fixture
    async def platform(self) -> AsyncIterator[FakeAcme]:
        fake = FakeAcme()
        server = await start_server(fake.app)
        fake.base_url = str(server.make_url("/v1"))
        yield fake
        await server.close()

    def section(self, platform: FakeAcme) -> dict[str, Any]:
        return {"api_url": platform.base_url, "api_token": TOKEN, "webhook_secret": SECRET}

    def sent_texts(self, platform: FakeAcme, recipient: str) -> list[str]:
        return [m["text"] for m in platform.sent if m["to"] == recipient]

    def fail_after(self, platform: FakeAcme, accepted: int) -> None:
        platform.fail_next(1, status=503, after=accepted)

    def reply_request(
        self, platform: FakeAcme, section: dict[str, Any], sender: str, text: str
    ) -> SimulatedRequest | None:
        quoted = [m for m in platform.sent if m["to"] == sender][-1]["id"]
        body = json.dumps({"from": sender, "id": "in-1", "text": text, "ts": 1.0, "reply_to": quoted}).encode()
        signature = hmac.new(section["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
        return SimulatedRequest("POST", "/webhooks/acme", {"X-Acme-Signature": signature}, body)
