"""The systemd notify protocol (sd_notify), spoken without libsystemd.

Why by hand: the protocol is one datagram per state change to the unix socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract
namespace), and a dependency for that would be heavier than this module.
With ``Type=notify`` systemd waits for ``READY=1``; with ``WatchdogSec=`` it
expects ``WATCHDOG=1`` more often than ``$WATCHDOG_USEC`` and restarts a
daemon that goes quiet. When the variable is unset every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Send sd_notify messages; silently inactive outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env: Mapping[str, str] = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if raw.startswith("@"):
            self.address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self.address = raw
        self.watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when a notify socket was given."""
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram.

        Failures are logged, never raised: losing a status line must not stop
        the daemon. Returns whether the datagram was sent.
        """
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError as err:
            log.warning("sd_notify failed: %s", err)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up (or a reload) is complete."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        """Announce a reload; systemd needs the monotonic time with it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Announce that shutdown has begun."""
        return self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half of ``$WATCHDOG_USEC``), or None."""
        if self.address is None or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    async def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` at half the watchdog interval until cancelled.

        It runs on the event loop on purpose: a loop blocked long enough stops
        the keep-alives, and systemd restarts the daemon.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the socket (it is reopened on the next notify)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int:
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return 0  # the watchdog is meant for another process (our parent)
    raw = env.get("WATCHDOG_USEC", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 0
