"""The agent web console at ``/``: server-rendered pages, a little plain JavaScript, nothing from elsewhere.

Why pages that carry no data: the session cookie belongs to ``/api`` (it is
scoped to that path), so a page cannot tell who asks for it. Each page is a
Jinja2 template (aiohttp-jinja2) with its labels, forms and headings, and its
script fetches what it shows from the REST API and follows ``/api/events``
(EventSource) for live updates: one authenticated surface, one audit trail.
What needs no session is rendered on the server: the channels' names and
reply windows, and on the login page of a store without agents the exact
command that creates the first admin.

Every page and file is served with a strict Content-Security-Policy (only
this origin; no inline script or style; ``frame-ancestors 'none'``),
``X-Frame-Options: DENY`` and ``nosniff``. Templates and assets ship inside
the package (``bridge/web/console/templates``, ``.../static``): no build
step, no CDN.
"""

from __future__ import annotations

from bridge.web.console.pages import CONSOLE_PATHS, POLICY, add_console

__all__ = ["CONSOLE_PATHS", "POLICY", "add_console"]
