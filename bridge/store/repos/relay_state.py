"""The relay's own bookkeeping: once-per-period flags, agent-message dedupe, early status reports.

None of it is personal data: flags name ids, dedupe rows and early reports
hold blind indexes of platform ids and (scrubbed) error texts.
"""

from __future__ import annotations

from bridge.store.records import EarlyStatus
from bridge.store.scrub import scrub_error
from bridge.store.session import Session


class RelayStateRepo:
    """``relay_flags``, ``agent_inbound`` and ``early_statuses``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def flag(self, name: str, subject: str) -> bool:
        """Set a once-per-period flag; return True when it was not set before."""
        cursor = self._s.execute(
            "INSERT INTO relay_flags (name, subject, at) VALUES (?, ?, ?) ON CONFLICT (name, subject) DO NOTHING",
            (name, subject, self._s.now()),
        )
        return bool(cursor.rowcount == 1)

    def clear_flag(self, name: str, subject: str) -> None:
        """End a period: the next ``flag`` call succeeds again."""
        self._s.execute("DELETE FROM relay_flags WHERE name = ? AND subject = ?", (name, subject))

    def first_agent_message(self, channel: str, external_id: str) -> bool:
        """Record an agent's platform message id; False when it was already seen (a re-delivery).

        Agent traffic has no row in ``messages``, so this keyed-hash table is what
        drops a platform's re-delivery of it.
        """
        cursor = self._s.execute(
            "INSERT INTO agent_inbound (channel, external_index, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (channel, external_index) DO NOTHING",
            (channel, self._s.blind(f"agent-message:{channel}", external_id), self._s.now()),
        )
        return bool(cursor.rowcount == 1)

    def keep_early_status(
        self,
        channel: str,
        extid_kind: str,
        external_id: str,
        status: str,
        code: str | None,
        title: str | None,
        *,
        window_closed: bool = False,
    ) -> None:
        """Keep a report about a send whose platform id we do not know yet (the send's 2xx is still on its way)."""
        self._s.execute(
            "INSERT INTO early_statuses (channel, external_index, status, error_code, error_title, at, window_closed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, external_index, status) DO NOTHING",
            (
                channel, self._s.blind(extid_kind, external_id), status, code, scrub_error(title), self._s.now(),
                int(window_closed),
            ),
        )  # fmt: skip

    def take_early_statuses(self, channel: str, extid_kind: str, external_ids: list[str]) -> list[EarlyStatus]:
        """Remove and return the kept reports about any of ``external_ids``."""
        found: list[EarlyStatus] = []
        for external_id in external_ids:
            index = self._s.blind(extid_kind, external_id)
            rows = self._s.execute(
                "SELECT status, error_code, error_title, window_closed FROM early_statuses"
                " WHERE channel = ? AND external_index = ?",
                (channel, index),
            ).fetchall()
            found.extend(EarlyStatus(r[0], r[1], r[2], bool(r[3])) for r in rows)
            if rows:
                self._s.execute("DELETE FROM early_statuses WHERE channel = ? AND external_index = ?", (channel, index))
        return found

    def forget_old(self, *, dedupe_before: float, flag_name: str, flags_before: float, reports_before: float) -> None:
        """Drop agent dedupe rows, spent ``flag_name`` flags and orphan early reports older than the cutoffs."""
        self._s.execute("DELETE FROM agent_inbound WHERE created_at < ?", (dedupe_before,))
        self._s.execute("DELETE FROM relay_flags WHERE name = ? AND at < ?", (flag_name, flags_before))
        self._s.execute("DELETE FROM early_statuses WHERE at < ?", (reports_before,))
