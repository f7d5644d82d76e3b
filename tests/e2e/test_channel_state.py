"""The channel-state facility (``ChannelContext.load_state``/``save_state``) through a real Bridge and store.

What a pull channel keeps (an IMAP folder's UIDVALIDITY and last UID) must
survive a restart, stay with its own channel, and be sealed like every
other value in the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import ChannelError
from bridge.channel import ChannelContext
from tests.e2e.harness import make_bridge
from tests.plugins.recorder import RecordingCore

MARKER = "uidvalidity-Marker-7731"


async def test_state_is_kept_per_channel_across_a_restart_and_sealed(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        memory, second = bridge.channels["memory"].ctx, bridge.channels["second"].ctx
        assert await memory.load_state("imap:INBOX") is None
        await memory.save_state("imap:INBOX", f'{{"{MARKER}": 1}}')
        await memory.save_state("imap:INBOX", f'{{"{MARKER}": 2}}')  # replaced, not added
        assert await second.load_state("imap:INBOX") is None, "each channel has its own keys"
    finally:
        await bridge.close()
    bridge = await make_bridge(tmp_path)
    try:
        assert await bridge.channels["memory"].ctx.load_state("imap:INBOX") == f'{{"{MARKER}": 2}}'
        with pytest.raises(ValueError, match="at most"):
            await bridge.channels["memory"].ctx.save_state("big", "x" * (64 * 1024 + 1))
    finally:
        await bridge.close()
    for path in (tmp_path / "var").rglob("carebridge.db*"):
        assert MARKER.encode() not in path.read_bytes(), f"plaintext state in {path.name}"


async def test_a_context_not_lent_by_a_bridge_says_so() -> None:
    lent = RecordingCore().context(None, "memory")  # type: ignore[arg-type]
    ctx = ChannelContext(http=lent.http, deliver=lent.deliver, update_status=lent.update_status,
                         save_media=lent.save_media, report=lent.report, log=lent.log)  # fmt: skip
    with pytest.raises(ChannelError, match="no state store"):
        await ctx.load_state("k")
    with pytest.raises(ChannelError, match="no state store"):
        await ctx.save_state("k", "v")


async def test_the_recording_context_keeps_state_in_memory() -> None:
    core = RecordingCore()
    ctx = core.context(None, "memory")  # type: ignore[arg-type]
    assert await ctx.load_state("k") is None
    await ctx.save_state("k", "v")
    assert await ctx.load_state("k") == "v" and core.state == {"k": "v"}
