"""An acknowledged write survives the death of the process (SIGKILL of a real writer)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

from bridge.store import open_store
from tests.core.test_store_kit import ROOT, settings

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bridge.config import StoreConfig
    from bridge.store import open_store

    async def main():
        store = await open_store(StoreConfig(path=Path(sys.argv[1]), key=sys.argv[2]))
        conv = await store.write(lambda tx: tx.conversations.create(
            tx.contacts.get_or_create_identity("whatsapp", "+31600000009")[0].contact_id, None, "whatsapp").id)
        counter = iter(range(10**9))

        async def one():
            for i in counter:
                mid = await store.write(lambda tx, i=i: tx.messages.insert(
                    conv, direction="in", channel="whatsapp", text=f"acked {i}", external_id=f"w{i}"))
                print(mid, flush=True)   # the acknowledgement: only after COMMIT

        await asyncio.gather(*(one() for _ in range(16)))

    asyncio.run(main())
    """
)


def test_every_acknowledged_message_survives_sigkill(tmp_path) -> None:
    cfg = settings(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(cfg.path), cfg.key],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[int] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    acked.extend(int(line) for line in proc.stdout.read().split())  # printed before the kill
    proc.stdout.close()
    assert len(acked) >= 300

    async def stored() -> dict[int, str]:
        store = await open_store(cfg, create_missing_key=False)
        try:
            return await store.read(
                lambda tx: {m.id: m.text for m in tx.messages.of_conversation(1)}  # the one conversation
            )
        finally:
            await store.close()

    messages = asyncio.run(stored())
    missing = set(acked) - set(messages)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    assert all(text.startswith("acked ") for text in messages.values())
