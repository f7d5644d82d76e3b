"""WhatsApp: statuses name the delivery they are about, through ``biz_opaque_callback_data``."""

from __future__ import annotations

from typing import Any

import pytest

from carebridge_whatsapp.webhook import callback_data, parse_payload
from tests.plugins.whatsapp.conftest import PHONE_NUMBER_ID
from tests.plugins.whatsapp.test_whatsapp_parse import envelope


def _status(**extra: Any) -> dict[str, Any]:
    return {"id": "wamid.X1", "status": "delivered", "timestamp": "1735689600", "recipient_id": "15550002222", **extra}


@pytest.mark.parametrize(
    ("data", "delivery_id"),
    [(callback_data(17, 0, 1), 17), (callback_data(17, 0, 2), None), (callback_data(17, 1, 2), 17),
     ("someone-else:17", None), (None, None)],
)  # fmt: skip
def test_a_status_names_our_delivery_when_it_is_about_its_last_part(data: str | None, delivery_id: int | None) -> None:
    item = _status() if data is None else _status(biz_opaque_callback_data=data)
    events = parse_payload(envelope(statuses=[item]), phone_number_id=PHONE_NUMBER_ID)
    (status,) = events.statuses
    assert (status.external_id, status.delivery_id) == ("wamid.X1", delivery_id)


def test_callback_data_fits_metas_limit() -> None:
    assert len(callback_data(10**17, 3, 5)) <= 512
