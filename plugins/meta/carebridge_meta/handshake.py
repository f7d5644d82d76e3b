"""Meta's webhook verification: the ``hub.mode=subscribe`` GET handshake.

When a callback URL is saved in the app dashboard, Meta calls it with
``hub.mode``, ``hub.verify_token`` and ``hub.challenge``, and subscribes only
if the answer is 200 with the challenge as the body, verbatim.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from bridge import json_error


def verify_subscription(request: web.Request, verify_token: str) -> web.Response:
    """Answer Meta's ``hub.mode=subscribe`` handshake.

    200 with ``hub.challenge`` echoed verbatim as text/plain when the mode is
    ``subscribe`` and the token matches; 403 otherwise (also when no token is
    configured, so a misconfigured channel fails closed). The challenge stays
    a string: some frameworks turn it into a JSON number, which Meta refuses.
    """
    query = request.query
    mode = query.get("hub.mode")
    token = query.get("hub.verify_token", "")
    challenge = query.get("hub.challenge")
    if mode != "subscribe" or challenge is None or not verify_token:
        return json_error(403, "verification_failed", "hub.mode must be subscribe with a hub.challenge")
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return json_error(403, "verification_failed", "hub.verify_token does not match")
    return web.Response(status=200, text=challenge, content_type="text/plain")
