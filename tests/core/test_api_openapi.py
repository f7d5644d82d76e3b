"""The OpenAPI document is true: every registered /api route is in it, and it lists nothing else."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.core.apikit import DeskFactory, make_desk  # noqa: F401 (fixture)


def _api_routes(app: web.Application) -> set[tuple[str, str]]:
    """``(METHOD, /api/path/{param})`` of every route of the mounted ``/api`` sub-application."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if not isinstance(sub, web.Application):
            continue
        for inner in sub.router.resources():
            for route in inner:
                found.add((route.method, inner.canonical))
    return {(method, path) for method, path in found if path.startswith("/api/")}


async def test_every_api_route_is_documented_and_nothing_else(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    async with desk.client.get("/api/openapi.json") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "patch", "put", "delete")
    }
    registered = _api_routes(desk.client.server.app)  # type: ignore[arg-type]
    assert registered, "no /api routes found"
    assert registered == documented
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == {part[1:-1] for part in path.split("/") if part.startswith("{")}, (method, path)
            assert operation["responses"], (method, path)
