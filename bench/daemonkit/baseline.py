"""The baseline: a bare aiohttp server that reads each POST body and answers 200.

Run: ``python baseline.py --port P``

Why it exists: the daemon's ingest figures mean little on their own (the
machine, the Python build and aiohttp set a ceiling). This server does the
least any aiohttp webhook endpoint must do, read the request and answer it,
on the same interpreter, the same aiohttp, the same core and under the same
load generator, so ``daemon / baseline`` is the share of that ceiling the
daemon keeps while verifying, storing and routing each message.
Like the daemon it runs an ``AppRunner`` without an access log.
"""

from __future__ import annotations

import argparse

from aiohttp import web

OK = b'{"status":"ok"}'


async def receive(request: web.Request) -> web.Response:
    """Read the whole body, as a webhook handler must before it can check a signature."""
    await request.read()
    return web.Response(body=OK, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """Answer the readiness probe the benchmark polls before it sends load."""
    return web.Response(body=OK, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp baseline for bench/daemon.py")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/webhooks/{channel}", receive)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
