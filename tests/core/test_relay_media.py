"""Media left unfetched by an earlier run is handed back to its channel after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.models import Attachment
from tests.e2e.harness import make_bridge


def _flip_meta_byte(tx: Any) -> None:
    blob = bytearray(tx._session.conn.execute("SELECT meta FROM attachments WHERE kind = 'file'").fetchone()[0])
    blob[-1] ^= 0x01
    tx._session.conn.execute("UPDATE attachments SET meta = ? WHERE kind = 'file'", (bytes(blob),))


async def test_resume_media_hands_unfetched_attachments_to_the_channel_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        mem = bridge.channels["memory"]
        photo = Attachment(kind="image", media_id="m-photo", mime="image/jpeg", meta={"caption": "broken lid"})
        place = Attachment(kind="location", meta={"latitude": 1.5, "longitude": 2.5})  # nothing to fetch
        first = await mem.inbound("cust", "", attachments=(photo, place))
        saved = Attachment(kind="audio", media_id="m-saved", mime="audio/ogg")
        second = await mem.inbound("cust", "", attachments=(saved,))
        await bridge.relay.save_media("memory", second, 0, b"already here", "audio/ogg")
        broken = Attachment(kind="file", media_id="m-broken", filename="invoice.pdf")
        await mem.inbound("cust", "", attachments=(broken,))
        # Someone flips a byte of the third message's attachment metadata on disk.
        await bridge.store.write(_flip_meta_byte)
    finally:
        await bridge.close()  # stopped before the photo was ever fetched

    bridge = await make_bridge(tmp_path)
    try:
        mem = bridge.channels["memory"]
        await bridge.relay.resume_media("memory", mem)
        assert [(p.external_id, p.index) for p in mem.resumed] == [(first, 0)]
        item = mem.resumed[0]
        assert item.attachment.media_id == "m-photo"
        assert item.attachment.kind == "image"
        assert item.attachment.mime == "image/jpeg"
        assert dict(item.attachment.meta) == {"caption": "broken lid"}
        assert item.received_at > 0
        stored = await bridge.store.read(
            lambda tx: tx.attachments.read(tx.attachments.by_external("memory", first, 0).id)
        )
        assert stored == b"bytes of m-photo"
        # Once fetched, nothing is pending any more; the other channel never had any.
        assert await bridge.relay.resume_media("memory", mem) == 0
        assert await bridge.relay.resume_media("second", bridge.channels["second"]) == 0
        assert len(mem.resumed) == 1
        # The tampered row was reported, not silently skipped, and did not stop the others.
        assert any("cannot be resumed" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    finally:
        await bridge.close()
