"""``python -m bridge``: the same CLI as the ``carebridge`` script."""

from __future__ import annotations

import sys

from bridge.cli import main

sys.exit(main())
