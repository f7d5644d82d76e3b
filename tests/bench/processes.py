"""What a benchmark left behind: processes still running inside its directory."""

from __future__ import annotations

import os
from pathlib import Path


def processes_under(directory: Path) -> list[str]:
    """Command lines of live processes whose working directory or arguments lie in ``directory``.

    Every child of bench/daemon.py runs with its working directory in the
    benchmark's temporary directory (or names it in its arguments), so an
    empty list after a run means every one was stopped.
    """
    found = []
    root = str(directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cwd.startswith(root) or root in cmdline:
            found.append(cmdline.strip())
    return found
