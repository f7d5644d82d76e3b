"""The customer page, its script and style, and the embeddable widget: files shipped in this package.

Plain HTML, CSS and JavaScript, no build step and nothing from another
origin: the page's Content-Security-Policy allows its own origin only. The
files are read once, when the channel is built.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Files under /webhooks/webchat/static/.
STATIC = ("chat.js", "chat.css", "chat.svg")


def read(name: str) -> bytes:
    """The bytes of a shipped file."""
    return resources.files("carebridge_webchat").joinpath("static", name).read_bytes()


def content_type(name: str) -> str:
    """The Content-Type of a shipped file, by its suffix."""
    return _TYPES[name[name.rfind(".") :]]


def page_policy(allowed_origins: tuple[str, ...]) -> str:
    """The Content-Security-Policy of /chat: own origin only; framed only by the allowed sites."""
    ancestors = " ".join(("'self'", *allowed_origins)) if allowed_origins else "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
        f" base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )


@dataclass(frozen=True, slots=True)
class Assets:
    """The files, ready to serve."""

    page: bytes
    files: dict[str, bytes]
    widget: bytes

    @classmethod
    def load(cls, title: str, max_text: int) -> Assets:
        """Read the files; the page gets its title and length limit."""
        page = read("chat.html").decode("utf-8").replace("{{title}}", html.escape(title))
        page = page.replace("{{max_text}}", str(max_text))
        return cls(page.encode("utf-8"), {name: read(name) for name in STATIC}, read("widget.js"))


def file_response(body: bytes, name: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """Serve a shipped file: its type, a short cache, no sniffing."""
    response = web.Response(body=body, headers=headers)
    response.headers["Content-Type"] = content_type(name)
    response.headers.setdefault("Cache-Control", "public, max-age=300")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
