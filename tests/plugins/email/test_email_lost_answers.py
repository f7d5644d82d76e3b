"""A mail whose 250 never arrives: the server may have queued it, and SMTP cannot be asked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge import DeliveryError, DeliveryUncertain
from carebridge_email import EmailChannel
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import free_port
from tests.plugins.email.test_email_send import outbound


async def test_a_connection_lost_after_the_message_data_is_uncertain(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    smtp.drop_after_data = 1
    with pytest.raises(DeliveryUncertain) as info:
        await make_channel().send(outbound())
    assert len(smtp.received) == 1, "the server did queue it"
    assert info.value.retryable and info.value.confirmable is False and info.value.code == "answer_lost"
    await make_channel().send(outbound())  # the core decides about the second send; the channel just sends
    assert len(smtp.received) == 2


async def test_a_server_that_cannot_be_reached_is_a_plain_retry(make_channel: Callable[..., EmailChannel]) -> None:
    with pytest.raises(DeliveryError) as info:
        await make_channel(smtp_port=free_port()).send(outbound())
    assert not isinstance(info.value, DeliveryUncertain), "nothing went out"
    assert info.value.retryable and info.value.code == "connect"
