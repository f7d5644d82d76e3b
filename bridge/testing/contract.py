"""The contract every channel plugin keeps with the core, as tests a plugin runs against itself.

The core relies on a few promises no type checker sees: a config error names
its key, ``simulate`` builds a request the channel's own verification
accepts, a long text arrives split and in order and a retried delivery
resumes after its failed part, a failed store makes the platform deliver
again, and a receipt's ids are the ids inbound messages quote in
``reply_to``. ``ChannelContract`` checks each against the plugin's channel
and a fake of its platform. Subclass it in the plugin's tests (the class
name must start with ``Test``) and describe the platform::

    class TestAcmeContract(ChannelContract):
        channel_class = AcmeChannel
        recipients = ("user-1", "user-2")          # two addresses sends may go to

        @pytest.fixture
        async def platform(self) -> AsyncIterator[FakeAcme]:
            fake = FakeAcme(token=TOKEN)
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

        def reply_request(self, platform, section, sender, text) -> SimulatedRequest | None:
            ...   # the request Acme posts when ``sender`` quotes the last message sent to them

Channels without a text limit skip the split tests; channels that cannot
``simulate`` must say so with ``ChannelError`` (and may deliver inbound
messages their own way by overriding ``inbound_request`` and ``hand_in``,
as a mail channel does over LMTP). Everything a subclass leaves out that a
test needs makes that test fail, naming the method, never pass silently.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import (
    Channel,
    ChannelError,
    ConfigError,
    DeliveryError,
    DeliveryReceipt,
    OutboundMessage,
    SimulatedRequest,
)
from bridge.testing.asyncio_support import async_fixture, async_test
from bridge.testing.recorder import RecordingCore

#: What every channel name must look like: it is a config section and an address prefix.
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: A key no channel has.
UNKNOWN_KEY = "surely_not_a_key"
#: A value no key accepts: TOML tables are not strings, flags, numbers or lists.
WRONG_TYPE = {"a": 1}


class Outcome(enum.Enum):
    """What the platform makes of the channel's answer to one inbound request."""

    ACCEPTED = "accepted"  # 2xx (LMTP 250): delivered, the platform forgets it
    RETRY = "retry"  # HTTP 5xx (LMTP 4xx): the platform will deliver it again
    REFUSED = "refused"  # anything else: the platform gives up on it


@dataclass
class ContractEnv:
    """One test's channel, wired as the core wires it, and its platform.

    :param platform: what the subclass's ``platform`` fixture returned.
    :param section: the valid section the channel was built from.
    :param core: the recording context's owner: what the channel handed over.
    :param channel: the channel (started unless ``start_channel`` is False).
    :param client: a client of the channel's web app mounted at
        ``/webhooks/<name>``, as the core mounts it; None without one.
    """

    platform: Any
    section: dict[str, Any]
    core: RecordingCore
    http: aiohttp.ClientSession
    channel: Channel
    client: TestClient[web.Request, web.Application] | None

    async def post(self, request: SimulatedRequest) -> int:
        """Send ``request`` to the channel's web app; return the HTTP status."""
        if self.client is None:
            raise AssertionError(f"channel {self.channel.name!r} has no web app to post {request.path} to")
        async with self.client.request(
            request.method, request.path, data=request.body, headers=dict(request.headers)
        ) as response:
            await response.read()
            return response.status


def outbound(channel: str, recipient: str, text: str, delivery_id: int) -> OutboundMessage:
    """A delivery as the worker hands it over: the recipient wrote a moment ago."""
    return OutboundMessage(
        delivery_id=delivery_id, channel=channel, recipient=recipient, text=text, last_inbound_at=time.time()
    )


def long_text(limit: int) -> str:
    """About two and a half times ``limit`` characters of numbered words (each word in order once)."""
    words: list[str] = []
    length = 0
    while length < limit * 5 // 2:
        word = f"word{len(words):05d}"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _must_define(contract: object, signature: str) -> NoReturn:
    """Fail the running test: the subclass left out a method the contract needs."""
    pytest.fail(f"{type(contract).__name__} must define {signature} for the channel contract", pytrace=False)


class ChannelContract:
    """Contract tests of one channel; subclass it as ``Test<Platform>Contract`` (see the module docstring).

    :cvar channel_class: the channel under test.
    :cvar recipients: two different addresses the fake platform accepts sends to.
    :cvar required_keys: the keys a section cannot do without, for channels
        without a ``schema`` (with one, its required keys are used).
    :cvar start_channel: start the channel before each test (its ``start()``
        talks to the fake platform, as in the daemon).
    """

    channel_class: ClassVar[type[Channel]]
    recipients: ClassVar[tuple[str, str]]
    required_keys: ClassVar[tuple[str, ...] | None] = None
    start_channel: ClassVar[bool] = True

    # -- what a subclass describes ------------------------------------------
    # It also provides a fixture named ``platform``: the fake platform, served.

    def section(self, platform: Any) -> dict[str, Any]:
        """A valid ``[channels.<name>]`` section (secrets resolved) pointing at ``platform``."""
        _must_define(self, "section(platform)")

    def prepare(self, platform: Any, recipient: str) -> None:
        """Make ``recipient`` reachable on the platform (it wrote to us, started the bot, ...)."""

    def sent_texts(self, platform: Any, recipient: str) -> list[str]:
        """The texts the platform accepted for ``recipient``, in order."""
        _must_define(self, "sent_texts(platform, recipient)")

    def fail_after(self, platform: Any, accepted: int) -> None:
        """Make the platform accept ``accepted`` more sends, then refuse one with a retryable error."""
        _must_define(self, "fail_after(platform, accepted)")

    def reply_request(self, platform: Any, section: dict[str, Any], sender: str, text: str) -> SimulatedRequest | None:
        """The request the platform posts when ``sender`` quotes the last message sent to them.

        None: the platform carries no reply context (the reply test is skipped).
        """
        return None

    def unauthenticated(self, request: SimulatedRequest) -> SimulatedRequest | None:
        """``request`` without its credentials; None when they are not in its headers.

        The default keeps only ``Content-Type``: signatures and secret tokens
        travel in headers on every platform the core knows.
        """
        kept = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        return SimulatedRequest(request.method, request.path, kept, request.body)

    def inbound_request(self, env: ContractEnv, sender: str, text: str, *, reply: bool = False) -> Any:
        """A platform request delivering ``text`` from ``sender`` (quoting our last message with ``reply``).

        The default is ``simulate`` (``reply_request`` with ``reply``); None
        when the channel cannot build one.
        """
        if reply:
            return self.reply_request(env.platform, env.section, sender, text)
        if not _overrides(self.channel_class, "simulate"):
            return None
        return self.channel_class.simulate(env.section, sender, text)

    async def hand_in(self, env: ContractEnv, request: Any) -> Outcome:
        """Deliver a request from ``inbound_request`` to the channel as the platform does."""
        status = await env.post(request)
        if 200 <= status < 300:
            return Outcome.ACCEPTED
        return Outcome.RETRY if status >= 500 else Outcome.REFUSED

    # -- the environment ------------------------------------------------------

    @async_fixture
    async def contract_env(self, platform: Any) -> AsyncIterator[ContractEnv]:
        """The channel built from ``section(platform)`` on a recording context, started and served."""
        section = self.section(platform)
        core = RecordingCore()
        async with aiohttp.ClientSession() as http:
            name = self.channel_class.name
            channel = self.channel_class(section, core.context(http, name, max_body=256 * 1024))
            client: TestClient[web.Request, web.Application] | None = None
            sub = channel.web_app()
            if sub is not None:
                root = web.Application(client_max_size=256 * 1024)
                root.add_subapp(f"/webhooks/{name}", sub)
                client = TestClient(TestServer(root, host="127.0.0.1"))
                await client.start_server()
            try:
                if self.start_channel:
                    await channel.start()
                yield ContractEnv(platform, section, core, http, channel, client)
            finally:
                if self.start_channel:
                    await channel.stop()
                if client is not None:
                    await client.close()

    def _required(self) -> tuple[str, ...]:
        schema = self.channel_class.schema
        keys = schema.required if schema is not None else self.required_keys
        if not keys:
            raise AssertionError(
                f"{self.channel_class.__name__} declares no schema: list its required keys in "
                f"{type(self).__name__}.required_keys"
            )
        return tuple(keys)

    def _path(self, key: str) -> str:
        return f"channels.{self.channel_class.name}.{key}"

    # -- configuration ----------------------------------------------------------

    def test_channel_name_fits_a_section_and_an_address(self) -> None:
        cls = self.channel_class
        assert CHANNEL_NAME.match(cls.name), f"channel name {cls.name!r}: lower-case letters, digits and '_' only"
        assert cls.display_label().strip(), "the channel needs a display label"
        if cls.schema is not None:
            assert cls.schema.channel == cls.name, "the schema describes another channel's section"

    def test_a_valid_section_passes_check_config(self, platform: Any) -> None:
        self.channel_class.check_config(self.section(platform))

    def test_each_required_key_is_named_when_missing(self, platform: Any) -> None:
        section = self.section(platform)
        for key in self._required():
            assert key in section, f"section(platform) lacks the required key {key!r}"
            with pytest.raises(ConfigError) as info:
                self.channel_class.check_config({k: v for k, v in section.items() if k != key})
            assert self._path(key) in str(info.value), f"the error for a missing {key!r} does not name it"

    def test_a_value_of_the_wrong_type_is_named(self, platform: Any) -> None:
        section = self.section(platform)
        schema = self.channel_class.schema
        keys = [k.name for k in schema.keys] if schema is not None else list(self._required())
        for key in keys:
            with pytest.raises(ConfigError) as info:
                self.channel_class.check_config({**section, key: WRONG_TYPE})
            assert self._path(key) in str(info.value), f"the error for a table as {key!r} does not name it"

    def test_an_unknown_key_is_named(self, platform: Any) -> None:
        with pytest.raises(ConfigError) as info:
            self.channel_class.check_config({**self.section(platform), UNKNOWN_KEY: "x"})
        assert self._path(UNKNOWN_KEY) in str(info.value)

    def test_the_channel_refuses_to_build_without_a_required_key(self, platform: Any) -> None:
        section = self.section(platform)
        key = self._required()[0]
        core = RecordingCore()
        with pytest.raises(ConfigError):
            self.channel_class({k: v for k, v in section.items() if k != key}, core.context(_NO_HTTP, "x"))

    def test_normalize_address_is_idempotent(self) -> None:
        for recipient in self.recipients:
            once = self.channel_class.normalize_address(recipient)
            assert self.channel_class.normalize_address(once) == once

    # -- inbound ------------------------------------------------------------------

    @async_test
    async def test_simulate_passes_the_channels_own_verification(self, contract_env: ContractEnv) -> None:
        cls, env, sender = self.channel_class, contract_env, self.recipients[0]
        if not _overrides(cls, "simulate"):
            with pytest.raises(ChannelError):
                cls.simulate(env.section, sender, "hello")
            return
        text = "Hello from the contract suite"
        request = cls.simulate(env.section, sender, text)
        assert request.path.rstrip("/") == f"/webhooks/{cls.name}", "simulate must target the channel's mount"
        status = await env.post(request)
        assert 200 <= status < 300, f"the channel refused its own simulated request ({status})"
        [message] = env.core.messages
        assert (message.channel, message.text) == (cls.name, text)
        assert cls.normalize_address(message.sender) == cls.normalize_address(sender)
        assert message.external_id, "an inbound message needs the platform's id (the core drops duplicates by it)"

    @async_test
    async def test_a_request_without_its_credentials_is_refused(self, contract_env: ContractEnv) -> None:
        cls, env = self.channel_class, contract_env
        if not _overrides(cls, "simulate"):
            pytest.skip(f"{cls.name} cannot simulate inbound requests")
        stripped = self.unauthenticated(cls.simulate(env.section, self.recipients[0], "forged"))
        if stripped is None:
            pytest.skip(f"{cls.name}'s credentials are not in its request headers")
        assert await env.post(stripped) in (401, 403)
        assert env.core.messages == [], "an unauthenticated request must store nothing"

    @async_test
    async def test_a_failed_store_makes_the_platform_deliver_again(self, contract_env: ContractEnv) -> None:
        env = contract_env
        request = self.inbound_request(env, self.recipients[0], "stored at the second attempt")
        if request is None:
            raise AssertionError(
                f"{self.channel_class.name} cannot simulate: override inbound_request and hand_in for its transport"
            )
        env.core.fail_deliver = RuntimeError("the store is failing")
        assert await self.hand_in(env, request) is Outcome.RETRY, "a failed store must make the platform retry"
        assert env.core.messages == []
        env.core.fail_deliver = None
        assert await self.hand_in(env, request) is Outcome.ACCEPTED
        assert [m.text for m in env.core.messages] == ["stored at the second attempt"]

    # -- outbound -----------------------------------------------------------------

    @async_test
    async def test_a_long_text_is_split_in_order_within_the_limit(self, contract_env: ContractEnv) -> None:
        limit = self._limit()
        env, recipient = contract_env, self.recipients[0]
        self.prepare(env.platform, recipient)
        text = long_text(limit)
        receipt = await env.channel.send(outbound(self.channel_class.name, recipient, text, 101))
        parts = self.sent_texts(env.platform, recipient)
        assert len(parts) > 1, "a text over the limit must be sent in parts"
        assert all(0 < len(part) <= limit for part in parts), "a part exceeds max_text_length"
        assert " ".join(parts).split() == text.split(), "the parts must carry every word once, in order"
        _assert_one_id_per_part(receipt, parts)

    @async_test
    async def test_a_retried_delivery_resumes_after_the_failed_part(self, contract_env: ContractEnv) -> None:
        limit = self._limit()
        env, recipient = contract_env, self.recipients[0]
        self.prepare(env.platform, recipient)
        text = long_text(limit)
        message = outbound(self.channel_class.name, recipient, text, 102)
        self.fail_after(env.platform, 1)
        with pytest.raises(DeliveryError) as info:
            await env.channel.send(message)
        assert info.value.retryable, "a platform's temporary failure must be retryable"
        assert len(self.sent_texts(env.platform, recipient)) == 1
        receipt = await env.channel.send(message)  # the outbox's retry: same delivery, same text
        parts = self.sent_texts(env.platform, recipient)
        assert " ".join(parts).split() == text.split(), "the retry must resume after the part already accepted"
        _assert_one_id_per_part(receipt, parts)

    @async_test
    async def test_receipt_ids_are_unique_across_recipients(self, contract_env: ContractEnv) -> None:
        env, name = contract_env, self.channel_class.name
        for recipient in self.recipients:
            self.prepare(env.platform, recipient)
        first, second = self.recipients
        receipts = [
            await env.channel.send(outbound(name, first, "The same words", 201)),
            await env.channel.send(outbound(name, second, "The same words", 202)),
            await env.channel.send(outbound(name, first, "The same words", 203)),
        ]
        ids = [external_id for receipt in receipts for external_id in receipt.external_ids]
        assert all(isinstance(i, str) and i for i in ids) and all(r.external_ids for r in receipts)
        assert len(set(ids)) == len(ids), f"receipt ids must be unique within the channel: {ids}"

    @async_test
    async def test_an_inbound_reply_quotes_a_receipt_id(self, contract_env: ContractEnv) -> None:
        env, recipient = contract_env, self.recipients[0]
        self.prepare(env.platform, recipient)
        receipt = await env.channel.send(outbound(self.channel_class.name, recipient, "Did that help?", 301))
        request = self.inbound_request(env, recipient, "Yes, thanks!", reply=True)
        if request is None:
            pytest.skip(f"{self.channel_class.name} carries no reply context")
        assert await self.hand_in(env, request) is Outcome.ACCEPTED
        [message] = env.core.messages
        assert message.reply_to in receipt.external_ids, (
            f"reply_to {message.reply_to!r} is none of the receipt's ids {receipt.external_ids}: "
            "the core could not tell which message was answered"
        )

    def _limit(self) -> int:
        limit = self.channel_class.max_text_length
        if limit is None:
            pytest.skip(f"{self.channel_class.name} has no text length limit")
        return limit


class _NoHttp:
    """Stands in for the shared session where a test must fail before any request."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no HTTP expected here (ClientSession.{name})")


_NO_HTTP: Any = _NoHttp()


def _overrides(cls: type[Channel], method: str) -> bool:
    return getattr(cls, method).__func__ is not getattr(Channel, method).__func__


def _assert_one_id_per_part(receipt: DeliveryReceipt, parts: list[str]) -> None:
    ids = receipt.external_ids
    assert len(ids) == len(parts), f"one receipt id per part expected: {len(ids)} ids for {len(parts)} parts"
    assert len(set(ids)) == len(ids), "each part needs its own id"
