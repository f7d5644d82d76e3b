"""What an auditor with the database files and the master key can read (no tests here).

``readable_cells`` unwraps every data key in ``keys`` with the master key,
then tries EVERY key on EVERY blob cell of every table (and on every media
file, against every attachment id), using the store's own crypto and cell
binding. Whatever opens is returned with where it was found; tests then
search it for markers. ``raw_hits`` searches the plain bytes of the
database, its WAL and shm, and the media files.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bridge.store import crypto
from bridge.store.keyring import unwrap
from tests.core.test_store_kit import raw_files


@dataclass(frozen=True)
class Cell:
    """One ciphertext that opened: where it is, which key opened it, and its plaintext."""

    table: str
    column: str
    row: object
    key: str
    plaintext: bytes


def data_keys(db: Path, master: bytes) -> dict[str, bytes]:
    """Every data key in the store, unwrapped: ``{"contact:7": raw, ...}``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, owner_kind, owner_id, wrapped FROM keys").fetchall()
    finally:
        conn.close()
    return {f"{kind}:{owner}": unwrap(crypto.cipher(master), key_id, wrapped) for key_id, kind, owner, wrapped in rows}


def readable_cells(db: Path, keys: dict[str, bytes]) -> list[Cell]:
    """Every blob cell (and media file) that one of ``keys`` opens."""
    ciphers = {name: crypto.cipher(raw) for name, raw in keys.items()}
    found: list[Cell] = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        attachment_ids: list[int] = []
        for table in tables:
            if table == "keys":
                continue  # wrapped under the master key: these are the keys themselves
            columns = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
            ident = "name" if table == "meta" else ("id" if "id" in columns else "rowid")
            for row in conn.execute(f"SELECT {ident}, * FROM {table}"):  # noqa: S608 (names from the catalogue)
                row_id = row[0]
                if table == "attachments":
                    attachment_ids.append(int(row_id))
                for column, value in zip(columns, row[1:], strict=True):
                    if isinstance(value, bytes) and len(value) > crypto.OVERHEAD:
                        found.extend(_open(ciphers, table, column, row_id, value))
        media = db.with_name(db.stem + "-media")
        if media.exists():
            for path in media.iterdir():
                blob = path.read_bytes()
                for attachment_id in attachment_ids:
                    found.extend(_open(ciphers, "attachments", "file", attachment_id, blob, where=path.name))
    finally:
        conn.close()
    return found


def _open(ciphers: dict, table: str, column: str, row_id: object, blob: bytes, where: str | None = None) -> list[Cell]:
    out = []
    for name, aead in ciphers.items():
        try:
            plain = crypto.open_blob(aead, crypto.aad(table, column, row_id), blob)
        except crypto.DecryptError:
            continue
        out.append(Cell(table, column, where or row_id, name, plain))
    return out


def cells_naming(cells: list[Cell], *markers: str) -> list[Cell]:
    """The cells whose plaintext contains any of ``markers``."""
    needles = [m.encode() for m in markers]
    return [c for c in cells if any(n in c.plaintext for n in needles)]


def raw_hits(db: Path, *needles: bytes) -> list[tuple[str, bytes]]:
    """``(file, needle)`` for every needle found in the plain bytes of the store's files."""
    return [(name, n) for name, data in raw_files(db).items() for n in needles if n and n in data]
