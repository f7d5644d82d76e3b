"""The real daemon, SIGKILLed with deliveries pending: after a restart all go out, none twice."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import pyotp

from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections, store_rows

CUSTOMER = "+15550002222"
ALICE_PSID = "7000000000000001"


async def test_sigkill_with_pending_deliveries_then_restart_sends_each_once_in_order(
    world: World, tmp_path: Path
) -> None:
    wa_url, graph_url = world.graph_urls()
    config = write_config(
        tmp_path, channel_sections(wa_url, graph_url) + '[delivery]\nretry_base = "1h"\nretry_max = "1h"\n'
    )
    status, out, err = await run_cli(
        "agent", "add", "alice", "--channel", f"messenger:{ALICE_PSID}", "--password-stdin", "-c", str(config),
        stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out
    secret = found.group(1)
    db = tmp_path / "var" / "carebridge.db"

    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        world.point_at(daemon.url("/"))
        await world.messenger(ALICE_PSID, f"/login {pyotp.TOTP(secret).now()}")
        await world.whatsapp(CUSTOMER, "Is my order shipped?", name="Ann")
        await wait_for(lambda: any("order shipped" in t for t in world.fb_texts(ALICE_PSID)), what="relay")
        await wait_for(lambda: len(world.wa.read_marks) == 1, what="the customer's message marked read")
        world.wa.fail_next(2)  # the Cloud API is down for the next call (503)
        for text in ("first", "second", "third"):
            await world.messenger(ALICE_PSID, text)  # acknowledged: committed

        def attempted() -> bool:
            rows = store_rows(db, "SELECT status, attempts FROM outbox WHERE recipient_kind = 'contact' ORDER BY id")
            return rows == [("pending", 1), ("pending", 0), ("pending", 0)]

        await wait_for(attempted, what="the first reply failed once, the others wait behind it")
    finally:
        await daemon.stop(signal.SIGKILL)
    assert daemon.returncode == -signal.SIGKILL
    assert world.wa_texts(CUSTOMER) == []
    # The retry is due in an hour; bring it forward (plain scheduling column) rather than wait.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'")
    conn.close()

    restarted = DaemonProcess(config)
    await restarted.start()
    try:
        await wait_for(lambda: len(world.wa_texts(CUSTOMER)) == 3, what="resumed deliveries")
        assert world.wa_texts(CUSTOMER) == ["first", "second", "third"]

        def all_recorded() -> bool:
            # The fake accepts a send before the daemon commits its outcome: wait for the commit.
            rows = store_rows(db, "SELECT status FROM outbox WHERE recipient_kind = 'contact' ORDER BY id")
            return rows == [("sent",), ("sent",), ("sent",)]

        await wait_for(all_recorded, what="the three deliveries recorded as sent")
        # the shift survived the crash: the customer's next message still reaches alice
        await world.whatsapp(CUSTOMER, "thanks")
        await wait_for(lambda: "[#1 Ann · WhatsApp] thanks" in world.fb_texts(ALICE_PSID), what="relay after restart")
    finally:
        await restarted.stop()
    assert world.wa_texts(CUSTOMER) == ["first", "second", "third"]
