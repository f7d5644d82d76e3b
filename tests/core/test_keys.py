"""``carebridge keys rotate``: re-wrapping, refusal of the old key, crash safety."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from bridge.cli.keys import rotate
from bridge.config import load_config
from bridge.errors import ConfigError, KeyMismatchError, StoreError
from bridge.store import crypto, open_store
from bridge.store.keyfile import (
    encode_key,
    generate_key,
    load_master_key,
    write_key_file,
)
from bridge.store.keyring import unwrap
from tests.core.test_store_kit import (
    ROOT,
    cli,
    env_key_settings,
    settings,
    write_config,
)
from tests.daemon import DaemonProcess, run_cli
from tests.daemon import write_config as daemon_config
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud


async def _names(cfg) -> list[str]:
    store = await open_store(cfg, create_missing_key=False)
    try:
        return await store.read(
            lambda tx: [
                tx.contacts.get(r[0]).name for r in tx._session.conn.execute("SELECT id FROM contacts ORDER BY id")
            ]
        )
    finally:
        await store.close()


async def _seed(cfg, count: int) -> None:
    store = await open_store(cfg)
    try:
        await store.write(lambda tx: [tx.contacts.create(name=f"person {i}") for i in range(count)])
    finally:
        await store.close()


def _env(backend, tmp_path, key: bytes, monkeypatch):
    """Settings of ``backend``'s store reading ``key`` from the environment."""
    return backend.settings(tmp_path, key=env_key_settings(tmp_path, key, monkeypatch).key)


def test_rotate_file_key_in_place_and_refuse_old(tmp_path, monkeypatch, backend) -> None:
    config = backend.write_config(tmp_path)
    cfg = load_config(config).store
    asyncio.run(_seed(cfg, 5))
    old = load_master_key(cfg.key)
    result = cli("keys", "rotate", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "7 data keys re-wrapped" in result.stdout  # 5 contacts + system + hmac root
    new = load_master_key(cfg.key)
    assert new != old
    key_path = tmp_path / "var" / "master.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert not key_path.with_name("master.key.new").exists()
    assert asyncio.run(_names(cfg)) == [f"person {i}" for i in range(5)]
    with pytest.raises(KeyMismatchError, match="does not match"):
        asyncio.run(_names(_env(backend, tmp_path, old, monkeypatch)))
    assert asyncio.run(_names(_env(backend, tmp_path, new, monkeypatch))) == [f"person {i}" for i in range(5)]
    assert cli("audit", "verify", "-c", str(config), cwd=tmp_path).returncode == 0


def test_rotate_env_key_writes_output(tmp_path) -> None:
    old = generate_key()
    env = {"CB_MASTER": encode_key(old).strip()}
    config = write_config(tmp_path, key="env:CB_MASTER")
    refused = cli("keys", "rotate", "-c", str(config), cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "pass --output FILE" in refused.stderr
    os.environ["CB_MASTER"] = env["CB_MASTER"]
    try:
        asyncio.run(_seed(load_config(config).store, 2))
    finally:
        del os.environ["CB_MASTER"]
    out = tmp_path / "new.key"
    result = cli("keys", "rotate", "--output", str(out), "-c", str(config), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"install the new key from {out}" in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    new = load_master_key(f"file:{out}")
    # the old env value is refused from now on; the new key text works as an env value too
    stale = cli("audit", "verify", "-c", str(config), cwd=tmp_path, env=env)
    assert stale.returncode == 1 and "the master key does not match this database" in stale.stderr
    fresh = cli("audit", "verify", "-c", str(config), cwd=tmp_path, env={"CB_MASTER": out.read_text().strip()})
    assert fresh.returncode == 0, fresh.stderr
    assert new != old
    again = cli("keys", "rotate", "--output", str(out), "-c", str(config), cwd=tmp_path,
                env={"CB_MASTER": out.read_text().strip()})  # fmt: skip
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


async def test_rotate_argument_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--output is only for env: or credential: keys"):
        await rotate(settings(tmp_path), tmp_path / "out.key")
    with pytest.raises(StoreError, match="no store at"):
        await rotate(settings(tmp_path), None)


async def test_running_daemon_follows_a_rotation(tmp_path, monkeypatch, backend) -> None:
    cfg = backend.settings(tmp_path)
    daemon = await open_store(cfg)
    try:
        known = await daemon.write(lambda tx: tx.contacts.create(name="before"))
        other = await open_store(cfg)  # a contact whose key the daemon never unwrapped
        unseen = await other.write(lambda tx: tx.contacts.create(name="unseen"))
        await other.close()
        await rotate(cfg, None)  # what `carebridge keys rotate` does, from another Store
        new_key = load_master_key(cfg.key)
        # the daemon still reads (cached and uncached keys), and wraps new keys under the NEW key
        assert (await daemon.read(lambda tx: tx.contacts.get(known))).name == "before"
        assert (await daemon.read(lambda tx: tx.contacts.get(unseen))).name == "unseen"
        fresh = await daemon.write(lambda tx: tx.contacts.create(name="after"))
    finally:
        await daemon.close()
    assert await _names(_env(backend, tmp_path, new_key, monkeypatch)) == ["before", "unseen", "after"]
    assert fresh == unseen + 1


async def test_daemon_on_an_env_key_stops_wrapping_after_rotation(tmp_path, monkeypatch) -> None:
    cfg = env_key_settings(tmp_path, generate_key(), monkeypatch)
    daemon = await open_store(cfg)
    try:
        await rotate(cfg, tmp_path / "new.key")
        with pytest.raises(KeyMismatchError, match="it was rotated: restart with the new key"):
            await daemon.write(lambda tx: tx.contacts.create(name="lost"))
    finally:
        await daemon.close()
    new_cfg = env_key_settings(tmp_path, load_master_key(f"file:{tmp_path / 'new.key'}"), monkeypatch)
    assert await _names(new_cfg) == []


def _rotate_process(config) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "keys", "rotate", "-c", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _key_check(db) -> bytes | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 1000")
        row = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
        return None if row is None else row[0]
    finally:
        conn.close()


def _wait_for(proc: subprocess.Popen[bytes], condition) -> None:
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline and not condition():
        time.sleep(0.0005)


def _opens(tmp_path, key: bytes, monkeypatch) -> bool:
    try:
        asyncio.run(_names(env_key_settings(tmp_path, key, monkeypatch)))
    except KeyMismatchError:
        return False
    return True


def test_killed_rotation_leaves_exactly_one_working_key(tmp_path, monkeypatch) -> None:
    """SIGKILL a real `keys rotate` at random moments; exactly one key must open the store."""
    config = write_config(tmp_path)
    cfg = load_config(config).store
    asyncio.run(_seed(cfg, 3000))
    expected = [f"person {i}" for i in range(3000)]
    key_path = tmp_path / "var" / "master.key"
    pending = key_path.with_name("master.key.new")
    rng = random.Random(1234)
    outcomes = set()
    for run in range(10):
        old = load_master_key(cfg.key)
        proc = _rotate_process(config)
        if run % 3 == 0:
            time.sleep(rng.uniform(0.0, 1.2))  # anywhere in the run
        elif run % 3 == 1:
            _wait_for(proc, pending.exists)
            time.sleep(rng.uniform(0.0, 0.15))  # inside the re-wrap / commit / rename window
        else:
            # right after the commit, before the rename: watch the key check from outside
            check = _key_check(cfg.path)
            _wait_for(proc, lambda before=check: _key_check(cfg.path) != before)
            time.sleep(rng.uniform(0.0, 0.003))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        candidates = {old}
        for path in (pending, key_path):
            if path.exists():
                candidates.add(load_master_key(f"file:{path}"))
        working = [key for key in candidates if _opens(tmp_path, key, monkeypatch)]
        assert len(working) == 1, f"run {run}: {len(working)} of {len(candidates)} keys open the store"
        outcomes.add(("old" if working[0] == old else "new", pending.exists(), load_master_key(cfg.key) == working[0]))
        # the product path (file: reference) opens it, finishing an interrupted rename
        assert asyncio.run(_names(cfg)) == expected
        assert load_master_key(cfg.key) == working[0]
        assert not (pending.exists() and load_master_key(f"file:{pending}") == working[0])
    # the loop really exercised both sides of the commit (the state "committed,
    # not yet renamed" is usually hit too; test_interrupted_rename_is_finished pins it)
    assert {o[0] for o in outcomes} == {"old", "new"}, outcomes


async def test_rotate_subprocess_while_the_daemon_keeps_writing(tmp_path, monkeypatch, backend) -> None:
    """The CLI rotates while a running store creates contacts: no key may stay under the old master."""
    config = backend.write_config(tmp_path)
    cfg = load_config(config).store
    daemon = await open_store(cfg)
    stop = asyncio.Event()
    created: list[int] = []

    async def keep_writing() -> None:
        while not stop.is_set():
            created.append(await daemon.write(lambda tx: tx.contacts.create(name=f"n{len(created)}")))
            await asyncio.sleep(0.002)

    writer = asyncio.create_task(keep_writing())
    try:
        await asyncio.sleep(0.05)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "keys", "rotate", "-c", str(config),
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await writer
        await daemon.close()
    assert len(created) > 10
    names = await _names(_env(backend, tmp_path, load_master_key(cfg.key), monkeypatch))
    assert names == [f"n{i}" for i in range(len(created))]


def test_interrupted_rename_is_finished(tmp_path, monkeypatch) -> None:
    """The exact state of a crash between the re-wrap commit and the rename of master.key.new."""
    cfg = settings(tmp_path)
    asyncio.run(_seed(cfg, 3))
    key_path = tmp_path / "var" / "master.key"
    old = load_master_key(cfg.key)
    new = generate_key()
    write_key_file(key_path.with_name("master.key.new"), new)

    async def commit_only() -> None:
        store = await open_store(cfg)
        await store.rotate_master_key(new)
        await store.close()

    asyncio.run(commit_only())
    assert load_master_key(cfg.key) == old  # the process "died" here
    assert not _opens(tmp_path, old, monkeypatch) and _opens(tmp_path, new, monkeypatch)
    assert asyncio.run(_names(cfg)) == ["person 0", "person 1", "person 2"]
    assert load_master_key(cfg.key) == new
    assert not key_path.with_name("master.key.new").exists()


async def test_rotate_credential_key_writes_output(tmp_path, monkeypatch) -> None:
    """A systemd credential cannot be rewritten in place: the new key goes to --output, 0600."""
    creds = tmp_path / "creds"
    old = generate_key()
    write_key_file(creds / "master", old)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = settings(tmp_path, key="credential:master")
    await _seed(cfg, 2)
    with pytest.raises(ConfigError, match="pass --output FILE"):
        await rotate(cfg, None)
    out = tmp_path / "new.key"
    message = await rotate(cfg, out)
    assert "4 data keys re-wrapped" in message and f"install the new key from {out}" in message
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_master_key("credential:master") == old  # the credential itself is left alone
    with pytest.raises(KeyMismatchError):
        await _names(cfg)
    write_key_file(creds / "master", load_master_key(f"file:{out}"))  # what the admin installs
    assert await _names(cfg) == ["person 0", "person 1"]


async def test_real_daemon_keeps_storing_across_a_cli_rotation(tmp_path, aiohttp_server) -> None:
    """`carebridge run` stays up while `carebridge keys rotate` runs; new contacts get keys under the new master."""
    fake = FakeWhatsAppCloud(token="wa-token", phone_number_id="1055", app_secret="wa-secret", templates=())
    server = await aiohttp_server(fake.app)
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    config = daemon_config(
        tmp_path,
        '[channels.whatsapp]\nphone_number_id = "1055"\naccess_token = "wa-token"\napp_secret = "wa-secret"\n'
        f'verify_token = "vt"\ngraph_url = "{fake.graph_url(server)}"\n',
    )

    async def simulate(sender: str, text: str) -> None:
        status, out, err = await run_cli("simulate", "whatsapp", "--from", sender, "--text", text, "-c", str(config))
        assert status == 0 and "HTTP 200" in out, (out, err)

    old = load_master_key(f"file:{tmp_path / 'var' / 'master.key'}")
    async with DaemonProcess(config) as daemon:
        await simulate("+15550001111", "before the rotation")
        status, out, err = await run_cli("keys", "rotate", "-c", str(config))
        assert status == 0 and "data keys re-wrapped" in out, err
        await simulate("+15550002222", "a new customer after it")  # a new data key, wrapped by the daemon
        await simulate("+15550001111", "the first one again")
    assert daemon.returncode == 0, daemon.stderr
    assert "now using the new key" in daemon.stderr
    new = load_master_key(f"file:{tmp_path / 'var' / 'master.key'}")
    assert new != old
    texts = {}
    for who in ("+15550001111", "+15550002222"):
        status, out, err = await run_cli("gdpr", "export", f"whatsapp:{who}", "-c", str(config))
        assert status == 0, err
        texts[who] = [
            m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"
        ]
    assert texts == {"+15550001111": ["before the rotation", "the first one again"],
                     "+15550002222": ["a new customer after it"]}  # fmt: skip
    conn = sqlite3.connect(f"file:{tmp_path / 'var' / 'carebridge.db'}?mode=ro", uri=True)
    try:  # every data key, including the one the daemon created after the rotation, opens under the new key
        rows = conn.execute("SELECT id, wrapped FROM keys").fetchall()
    finally:
        conn.close()
    assert len(rows) >= 4
    for key_id, wrapped in rows:
        unwrap(crypto.cipher(new), key_id, wrapped)
        with pytest.raises(crypto.DecryptError):
            unwrap(crypto.cipher(old), key_id, wrapped)
