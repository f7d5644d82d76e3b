"""``GET /api/openapi.json``: the OpenAPI 3 description of the API.

Written out here rather than derived, so it says what a script may rely on;
a test checks that every registered ``/api`` route is in it and that it
lists nothing else, and a property test (schemathesis) calls every operation
with what the document allows and expects no 5xx.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.web.api.auth import COOKIE, CSRF_HEADER, public

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    words = {
        400: "bad input",
        401: "no session (or, for login, a failed login)",
        403: "not allowed, or the CSRF token is missing",
        404: "no such conversation or agent",
        409: "the state does not allow it (closed, taken meanwhile, off shift, …)",
        422: "the reply carries sensitive data (bank or card numbers, codes): send it with /secure",
        429: "locked: too many failed logins (see Retry-After)",
    }
    return {str(status): _json(_ref("Error"), words[status]) for status in statuses}


def _body(schema: Schema) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _object(properties: Schema, required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_TIME = {"type": "string", "format": "date-time"}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
_BEFORE = {"name": "before", "in": "query", "description": "the `next` cursor of the previous page",
           "schema": {"type": "string"}}  # fmt: skip
_WRITE: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]
_READ: list[dict[str, list[str]]] = [{"session": []}]

_SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({"code": _STRING, "message": _STRING}, ["code", "message"])}, ["error"]),
    "Me": _object(
        {
            "name": _STRING,
            "role": {"type": "string", "enum": ["agent", "admin"]},
            "channel": _STRING,
            "queues": {"type": "array", "items": _STRING},
            "capacity": {"type": "integer"},
            "csrf_token": _STRING,
            "expires_at": _TIME,
        },
        ["name", "role", "channel", "csrf_token"],
    ),  # fmt: skip
    "Conversation": _object(
        {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["queued", "assigned", "closed"]},
            "channel": _STRING,
            "contact_name": _NULLABLE_STRING,
            "agent": _NULLABLE_STRING,
            "queue": _STRING,
            "created_at": _TIME,
            "updated_at": _TIME,
            "unread": {"type": "integer", "description": "customer messages since the last reply or note"},
            "last_inbound_at": {**_TIME, "nullable": True, "description": "when the customer last wrote"},
        },
        ["id", "status", "channel", "contact_name", "agent", "queue", "updated_at"],
    ),  # fmt: skip
    "Message": _object(
        {
            "id": {"type": "integer"},
            "direction": {"type": "string", "enum": ["in", "out", "note", "system"]},
            "channel": _STRING,
            "text": _NULLABLE_STRING,
            "created_at": _TIME,
            "sensitive": {"type": "boolean"},
            "status": _STRING,
            "agent": _NULLABLE_STRING,
        },
        ["id", "direction", "channel", "text", "created_at", "sensitive"],
    ),  # fmt: skip
    "Agent": _object(
        {
            "name": _STRING,
            "role": _STRING,
            "channel": _STRING,
            "address": _STRING,
            "queues": {"type": "array", "items": _STRING},
            "capacity": {"type": "integer"},
            "disabled": {"type": "boolean"},
            "online": {"type": "boolean"},
        },
        ["name", "role", "channel", "queues", "capacity", "disabled"],
    ),  # fmt: skip
    "AuditEntry": _object(
        {
            "id": {"type": "integer"},
            "at": _TIME,
            "actor": _STRING,
            "action": _STRING,
            "subject": _NULLABLE_STRING,
            "detail": {},
        },
        ["id", "at", "actor", "action"],
    ),  # fmt: skip
}

_CONVERSATION_ANSWER = _object({"conversation": _ref("Conversation")}, ["conversation"])
_MESSAGE_ANSWER = _object({"message": _ref("Message")}, ["message"])
_TEXT_BODY = _object({"text": {"type": "string", "minLength": 1, "maxLength": 20000}}, ["text"])
_EMPTY_BODY = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}


def _action(summary: str, body: Schema, answer: Schema, status: str = "200", extra: tuple[int, ...] = ()) -> Schema:
    return {
        "summary": summary,
        "security": _WRITE,
        "parameters": [_ID_PARAM],
        "requestBody": body,
        "responses": {status: _json(answer, "done"), **_errors(400, 401, 403, 404, 409, *extra)},
    }


PATHS: dict[str, dict[str, Schema]] = {
    "/api/login": {
        "post": {
            "summary": "Log in with username, console password and a TOTP code (every time)",
            "security": [],
            "requestBody": _body(
                _object({"username": _STRING, "password": _STRING, "totp": _STRING}, ["username", "password", "totp"])
            ),
            "responses": {
                "200": {
                    **_json(_ref("Me"), "logged in; the session cookie is set"),
                    "headers": {
                        "Set-Cookie": {"schema": _STRING, "description": f"{COOKIE}: HttpOnly, SameSite=Strict"}
                    },
                },
                **_errors(400, 401, 429),
            },
        }
    },
    "/api/logout": {
        "post": {
            "summary": "End this session",
            "security": _WRITE,
            "requestBody": _EMPTY_BODY,
            "responses": {"200": _json(_object({"ok": {"type": "boolean"}}), "logged out"), **_errors(401, 403)},
        }
    },
    "/api/me": {
        "get": {
            "summary": "The logged-in agent (and the CSRF token of the session)",
            "security": _READ,
            "responses": {"200": _json(_ref("Me"), "the agent"), **_errors(401)},
        }
    },
    "/api/conversations": {
        "get": {
            "summary": "Conversations the agent holds (or held last) and those waiting in their queues (an admin: all)",
            "security": _READ,
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["queued", "assigned", "closed"]},
                },
                {"name": "queue", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
                _BEFORE,
                _LIMIT,
            ],
            "responses": {
                "200": _json(
                    _object(
                        {"conversations": {"type": "array", "items": _ref("Conversation")}, "next": _NULLABLE_STRING},
                        ["conversations", "next"],
                    ),
                    "most recently active first",
                ),
                **_errors(400, 401),
            },
        }
    },
    "/api/conversations/{id}": {
        "get": {
            "summary": "One conversation, if the agent may see it",
            "security": _READ,
            "parameters": [_ID_PARAM],
            "responses": {
                "200": _json(_object({"conversation": _ref("Conversation")}, ["conversation"]), "the conversation"),
                **_errors(401, 403, 404),
            },
        }
    },
    "/api/conversations/{id}/messages": {
        "get": {
            "summary": "A page of the transcript, oldest first within the page; each view is audited",
            "security": _READ,
            "parameters": [
                _ID_PARAM,
                _BEFORE,
                _LIMIT,
                {
                    "name": "reveal",
                    "in": "query",
                    "description": "1: show sensitive values (audited)",
                    "schema": {"type": "integer", "enum": [0, 1]},
                },
            ],  # fmt: skip
            "responses": {
                "200": _json(
                    _object(
                        {"messages": {"type": "array", "items": _ref("Message")}, "next": _NULLABLE_STRING},
                        ["messages", "next"],
                    ),
                    "the page; `next` pages back",
                ),
                **_errors(400, 401, 403, 404),
            },
        },
        "post": _action("Reply to the customer, as from chat", _body(_TEXT_BODY), _MESSAGE_ANSWER, "201", (422,)),
    },
    "/api/conversations/{id}/notes": {
        "post": _action("An internal note, never sent to the customer", _body(_TEXT_BODY), _MESSAGE_ANSWER, "201"),
    },
    "/api/conversations/{id}/transfer": {
        "post": _action(
            "Hand the conversation to a colleague or a queue",
            _body(_object({"to": {"type": "string", "minLength": 1, "maxLength": 64}, "note": _STRING}, ["to"])),
            _object(
                {
                    "conversation": _ref("Conversation"),
                    "to": _object({"agent": _NULLABLE_STRING, "queue": _NULLABLE_STRING}),
                },
                ["conversation", "to"],
            ),
        ),
    },
    "/api/conversations/{id}/close": {
        "post": _action("Close it (the customer gets the closed notice)", _EMPTY_BODY, _CONVERSATION_ANSWER),
    },
    "/api/conversations/{id}/take": {
        "post": _action("Take a conversation waiting in one of your queues", _EMPTY_BODY, _CONVERSATION_ANSWER),
    },
    "/api/conversations/{id}/secure": {
        "post": _action(
            "Deliver the text to the customer by email, never by chat",
            _body(_TEXT_BODY),
            _object({"result": _STRING}),
            "202",
        ),
    },
    "/api/events": {
        "get": {
            "summary": "Server-Sent Events: message, assigned, transferred, closed (only what the agent may see)",
            "security": _READ,
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "schema": _STRING, "description": "resume after this id"}
            ],
            "responses": {
                "200": {"description": "the event stream", "content": {"text/event-stream": {"schema": _STRING}}},
                **_errors(401),
            },
        }
    },
    "/api/agents": {
        "get": {
            "summary": "Every agent (admin)",
            "security": _READ,
            "responses": {
                "200": _json(_object({"agents": {"type": "array", "items": _ref("Agent")}}, ["agents"]), "agents"),
                **_errors(401, 403),
            },
        },
        "post": {
            "summary": "Enrol an agent (admin); the otpauth URI is shown once",
            "security": _WRITE,
            "requestBody": _body(
                _object(
                    {
                        "name": _STRING,
                        "channel": {"type": "string", "description": "CHANNEL:ADDRESS or console"},
                        "role": {"type": "string", "enum": ["agent", "admin"]},
                        "email": _STRING,
                        "queues": {"type": "array", "items": _STRING},
                        "capacity": {"type": "integer"},
                        "password": _STRING,
                    },
                    ["name", "channel", "password"],
                )
            ),  # fmt: skip
            "responses": {
                "201": _json(
                    _object(
                        {"agent": _ref("Agent"), "otpauth_uri": _STRING, "totp_qr_svg": _STRING},
                        ["agent", "otpauth_uri"],
                    ),
                    "enrolled",
                ),
                **_errors(400, 401, 403, 409),
            },
        },
    },
    "/api/agents/{name}": {
        "patch": {
            "summary": "Change an agent's channel, queues or capacity, or disable them (admin)",
            "security": _WRITE,
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STRING}],
            "requestBody": _body(
                _object(
                    {
                        "channel": _STRING,
                        "queues": {"type": "array", "items": _STRING},
                        "capacity": {"type": "integer"},
                        "disabled": {"type": "boolean"},
                    }
                )
            ),  # fmt: skip
            "responses": {
                "200": _json(_object({"agent": _ref("Agent")}, ["agent"]), "changed"),
                **_errors(400, 401, 403, 404, 409),
            },
        }
    },
    "/api/audit": {
        "get": {
            "summary": "The audit log, newest first (admin); reading it is audited too",
            "security": _READ,
            "parameters": [{"name": "subject", "in": "query", "schema": _STRING}, _BEFORE, _LIMIT],
            "responses": {
                "200": _json(
                    _object(
                        {"entries": {"type": "array", "items": _ref("AuditEntry")}, "next": _NULLABLE_STRING},
                        ["entries", "next"],
                    ),
                    "entries",
                ),
                **_errors(400, 401, 403),
            },
        }
    },
    "/api/audit/verify": {
        "get": {
            "summary": "Walk the audit log's hash chain (admin), as `carebridge audit verify` does",
            "security": _READ,
            "responses": {
                "200": _json(
                    _object(
                        {
                            "ok": {"type": "boolean"},
                            "count": {"type": "integer"},
                            "bad_id": {"type": "integer", "nullable": True},
                            "reason": _STRING,
                        },
                        ["ok", "count", "bad_id", "reason"],
                    ),
                    "the result",
                ),
                **_errors(401, 403),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
        }
    },
}


def document(version: str) -> Schema:
    """The OpenAPI 3 document of the API."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Carebridge agent API",
            "version": version,
            "description": (
                "Log in with POST /api/login; send the session cookie with every call and the login's"
                f" csrf_token as {CSRF_HEADER} with every state-changing call."
            ),
        },
        "paths": PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
            },
        },
    }


@public
async def get_openapi(request: web.Request) -> web.StreamResponse:
    """``GET /api/openapi.json``."""
    from bridge import __version__

    return web.json_response(document(__version__))
