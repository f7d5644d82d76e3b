"""Daemon logging: one line per event, level applied, secrets masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bridge.daemon.logs import mask_secrets, secrets_in, set_level, setup_logging


@pytest.fixture
def stderr_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[logging.Logger]:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    setup_logging("info")
    try:
        yield logging.getLogger("carebridge.test")
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
        mask_secrets([])


def test_one_line_per_event_even_with_a_traceback(
    stderr_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        stderr_logging.exception("delivery %s failed", 42)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ERROR carebridge.test: delivery 42 failed | Traceback (most recent call last):" in err
    assert "ValueError: first line | second line" in err


def test_level_is_applied_and_changed(stderr_logging: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    stderr_logging.debug("hidden")
    set_level("debug")
    stderr_logging.debug("shown")
    set_level("error")
    stderr_logging.warning("hidden too")
    err = capsys.readouterr().err
    assert "shown" in err and "hidden" not in err
    assert logging.getLogger("apscheduler").level == logging.WARNING


def test_configured_secrets_are_masked_in_messages_and_tracebacks(
    stderr_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    channels = {
        "messenger": {
            "enabled": True,
            "page_access_token": "EAAG-secret-token",
            "app_secret": "appsecret123",
            "page_id": "1234567",
        },
        "email": {"smtp_password": "hunter2-long", "nested": {"imap_password": "imap-pass-99"}},
    }
    found = secrets_in(channels)
    assert sorted(found) == ["EAAG-secret-token", "appsecret123", "hunter2-long", "imap-pass-99"]
    mask_secrets(found)
    stderr_logging.info("calling with %s", "token=EAAG-secret-token")
    try:
        raise RuntimeError("auth appsecret123 refused")
    except RuntimeError:
        stderr_logging.exception("boom")
    err = capsys.readouterr().err
    assert "EAAG-secret-token" not in err and "appsecret123" not in err
    assert "calling with token=***" in err and "auth *** refused" in err
    assert "1234567" not in found  # ids are not secrets


def test_a_channel_with_a_schema_says_which_values_are_secret(
    stderr_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge import Channel, ChannelSchema, ConfigKey, DeliveryReceipt, OutboundMessage

    class Acme(Channel):
        name = "acme"
        schema = ChannelSchema("acme", ConfigKey("pin", secret=True), ConfigKey("token_url", kind="url"))

        async def send(self, message: OutboundMessage) -> DeliveryReceipt:
            return DeliveryReceipt(("1",))

    channels = {
        "acme": {"enabled": True, "pin": "pin-7731-xyz", "token_url": "https://tokens.acme.example"},
        "other": {"api_token": "guessed-token-1"},
    }
    found = secrets_in(channels, {"acme": Acme})
    # The schema decides for acme (a secret not named like one; a public key named like one);
    # a channel without a schema keeps the guess by key name.
    assert sorted(found) == ["guessed-token-1", "pin-7731-xyz"]
    assert sorted(secrets_in(channels)) == ["guessed-token-1", "https://tokens.acme.example"]
    mask_secrets(found)
    stderr_logging.info("acme answered for %s via %s", "pin-7731-xyz", "https://tokens.acme.example")
    err = capsys.readouterr().err
    assert "pin-7731-xyz" not in err and "acme answered for *** via https://tokens.acme.example" in err
