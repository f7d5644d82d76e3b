"""``carebridge store migrate --to DSN``: a SQLite store copied into PostgreSQL through the real CLI."""

from __future__ import annotations

import asyncio
import json

from bridge.config import load_config
from bridge.store import open_store
from tests.core.test_store_kit import Backend, cli, write_config


def _seed(config) -> dict[str, int]:
    """Two customers with conversations, a media file, transfers and audit entries; one contact erased."""

    async def go() -> dict[str, int]:
        store = await open_store(load_config(config).store)
        try:

            def fill(tx) -> dict[str, int]:
                ids: dict[str, int] = {}
                for n, phone in enumerate(("+31611110000", "+31622220000", "+31633330000")):
                    ident, _ = tx.contacts.get_or_create_identity("whatsapp", phone, name=f"Person {n}")
                    conv = tx.conversations.create(ident.contact_id, ident.id, "whatsapp")
                    for i in range(30):
                        mid = tx.messages.insert(
                            conv.id, direction="in", channel="whatsapp", text=f"message {n}.{i}",
                            external_id=f"wamid.{n}.{i}",
                        )  # fmt: skip
                    ids[f"attachment{n}"] = tx.attachments.add(mid, 0, "image", mime="image/png", data=b"PNG" * 99)
                    ids[f"contact{n}"] = ident.contact_id
                    tx.audit.append("agent:alice", "transcript.view", f"conversation:{conv.id}", {"n": n})
                return ids

            ids = await store.write(fill)
            await store.write(lambda tx: tx.gdpr.erase_contact(ids["contact2"]))  # a gap in the ids, a shredded key
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def test_migrate_copies_checks_and_refuses_a_non_empty_target(tmp_path, pg_dsn) -> None:
    config = write_config(tmp_path)
    ids = _seed(config)
    done = cli("store", "migrate", "--to", "env:CB_TARGET", "-c", str(config), cwd=tmp_path, env={"CB_TARGET": pg_dsn})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("copied ") and "rows in" in lines[0]
    assert "row counts equal" in lines[1] and "sampled texts decrypt alike" in lines[1]
    assert "media files stay in" in lines[2]
    assert pg_dsn not in done.stdout + done.stderr

    (tmp_path / "pg").mkdir()
    pg_config = Backend("postgresql", pg_dsn).write_config(tmp_path / "pg")
    pg_config.write_text(
        pg_config.read_text().replace('path = "var/carebridge.db"', f'path = "{tmp_path / "var" / "carebridge.db"}"')
        .replace('key = "file:var/master.key"', f'key = "file:{tmp_path / "var" / "master.key"}"')
    )  # fmt: skip
    verify = cli("audit", "verify", "-c", str(pg_config), cwd=tmp_path)
    assert (verify.returncode, verify.stdout.strip()) == (0, "audit log intact: 3 entries"), verify.stderr
    export = cli("gdpr", "export", "whatsapp:+31622220000", "-c", str(pg_config), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    texts = [m["text"] for m in json.loads(export.stdout)["conversations"][0]["messages"]]
    assert texts == [f"message 1.{i}" for i in range(30)]
    assert cli("gdpr", "export", str(ids["contact2"]), "-c", str(pg_config), cwd=tmp_path).returncode == 1

    async def on_postgresql() -> tuple[bytes, int]:
        store = await open_store(load_config(pg_config).store)
        try:
            media = await store.read(lambda tx: tx.attachments.read(ids["attachment0"]))
            fresh = await store.write(lambda tx: tx.contacts.create(name="new"))
            return media, fresh
        finally:
            await store.close()

    media, fresh = asyncio.run(on_postgresql())
    assert media == b"PNG" * 99  # the media files stay where they were, and open
    assert fresh > ids["contact2"]  # ids go on after SQLite's counter, even past an erased contact

    again = cli("store", "migrate", "--to", pg_dsn, "-c", str(config), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "is not empty" in again.stderr
    assert again.stdout == ""
