"""Console login over the real app: password and TOTP every time, identical failures, lock-outs, sessions."""

from __future__ import annotations

import re

from bridge.web.api import ROUTES
from tests.core.apikit import PASSWORD, DeskFactory, make_desk  # noqa: F401 (fixture)
from tests.e2e.harness import wait_for


def _cookie_header(response_headers: object) -> str:
    values = [v for k, v in response_headers.items() if k.lower() == "set-cookie"]  # type: ignore[attr-defined]
    assert len(values) == 1, values
    return values[0]


async def test_login_sets_a_strict_httponly_cookie_and_answers_who_and_csrf(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    body = {"username": "alice", "password": PASSWORD, "totp": desk.code("alice")}
    async with desk.client.post("/api/login", json=body) as response:
        assert response.status == 200
        answer = await response.json()
        cookie = _cookie_header(response.headers)
    assert answer["name"] == "alice" and answer["role"] == "agent" and answer["channel"] == "console"
    assert re.fullmatch(r"[0-9a-f]{64}", answer["csrf_token"])
    assert cookie.startswith("carebridge_session=")
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/api" in flags
    assert "secure" not in flags, "no Secure flag behind a plain-http public_url"
    assert any(flag.startswith("max-age=28800") for flag in flags)
    async with desk.client.get("/api/me") as response:
        assert response.status == 200
        me = await response.json()
    assert (me["name"], me["role"], me["channel"]) == ("alice", "agent", "console")
    assert me["csrf_token"] == answer["csrf_token"]


async def test_cookie_is_secure_behind_an_https_public_url(make_desk: DeskFactory) -> None:
    desk = await make_desk(server='public_url = "https://care.example.org"')
    await desk.add_agent("alice")
    body = {"username": "alice", "password": PASSWORD, "totp": desk.code("alice")}
    async with desk.client.post("/api/login", json=body) as response:
        assert response.status == 200
        cookie = _cookie_header(response.headers)
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_every_kind_of_failure_is_the_same_401(make_desk: DeskFactory) -> None:
    desk = await make_desk("[security]\nlogin_max_attempts = 50\nlogin_max_attempts_per_address = 100\n")
    await desk.add_agent("alice")
    await desk.add_agent("gone")
    await desk.bridge.store.write(lambda tx: tx.agents.disable(tx.agents.get_by_name("gone").id))
    used = desk.code("alice")
    assert (await desk.login("alice", code=used))[0] == 200
    desk.client.session.cookie_jar.clear()
    wrong_code = f"{(int(desk.code('alice')) + 1) % 1_000_000:06d}"
    attempts = {
        "unknown user": ("mallory", PASSWORD, desk.code("alice")),
        "wrong password": ("alice", "not the password", desk.code("alice")),
        "wrong code": ("alice", PASSWORD, wrong_code),
        "replayed code": ("alice", PASSWORD, used),
        "malformed code": ("alice", PASSWORD, "12ab"),
        "disabled agent": ("gone", PASSWORD, desk.code("gone")),
    }
    answers = {}
    for kind, (username, password, code) in attempts.items():
        body = {"username": username, "password": password, "totp": code}
        async with desk.client.post("/api/login", json=body) as response:
            answers[kind] = (
                response.status,
                await response.text(),
                "set-cookie" in {k.lower() for k in response.headers},
            )
    assert set(answers.values()) == {
        (401, '{"error": {"code": "login_failed", "message": "wrong username, password or code"}}', False)
    }, answers
    async with desk.client.get("/api/me") as response:
        assert response.status == 401
    metrics = (desk.bridge.metrics.render()[0]).decode()
    assert "carebridge_login_failures_total 6.0" in metrics
    actions = [e.action for e in await desk.bridge.store.read(lambda tx: tx.audit.entries())]
    assert actions.count("agent.login") == 1
    assert actions.count("agent.login_failed") == 5 and actions.count("agent.login_replayed") == 1


async def test_account_lock_answers_429_with_retry_after_and_lifts_when_it_ends(make_desk: DeskFactory) -> None:
    desk = await make_desk('[security]\nlogin_max_attempts = 3\nlockout = "10m"\n')
    await desk.add_agent("alice")
    for _ in range(3):
        status, answer = await desk.login("alice", password="wrong password!")
        assert status == 401, answer
    async with desk.client.post(
        "/api/login", json={"username": "alice", "password": PASSWORD, "totp": desk.code("alice")}
    ) as response:
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "login_locked"
        assert 590 <= int(response.headers["Retry-After"]) <= 600
    desk.clock.now += 601  # the store's clock: no sleeping
    status, answer = await desk.login("alice")
    assert status == 200, answer
    actions = [e.action for e in await desk.bridge.store.read(lambda tx: tx.audit.entries())]
    assert actions.count("agent.login_locked") == 1


async def test_unknown_names_lock_like_real_ones(make_desk: DeskFactory) -> None:
    desk = await make_desk("[security]\nlogin_max_attempts = 2\nlogin_max_attempts_per_address = 50\n")
    for _ in range(2):
        status, _answer = await desk.login("nobody", code="000000")
        assert status == 401
    status, answer = await desk.login("nobody", code="000000")
    assert status == 429, "a lock-out must not tell which names exist"
    assert answer["error"]["code"] == "login_locked"


async def test_address_limit_stops_spraying_across_accounts(make_desk: DeskFactory) -> None:
    desk = await make_desk('[security]\nlogin_max_attempts = 2\nlogin_max_attempts_per_address = 3\nlockout = "5m"\n')
    await desk.add_agent("alice")
    for name in ("bob", "carol", "dave"):
        assert (await desk.login(name, code="000000"))[0] == 401
    status, answer = await desk.login("alice")  # right password and code, from a locked address
    assert status == 429, answer
    desk.clock.now += 301
    assert (await desk.login("alice"))[0] == 200
    # Kept in the store: the counts are there for a restarted daemon too.
    assert await desk.bridge.store.read(lambda tx: len(tx.sessions.recent_failures("address", "127.0.0.1", 0, 10))) == 3


async def test_a_code_used_in_chat_is_refused_on_the_api_and_the_reverse(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice", "memory:alice-phone")
    code = desk.code("alice")
    await desk.memory.inbound("alice-phone", f"/login {code}")
    await wait_for(lambda: any(t.startswith("You are logged in") for t in desk.memory.texts_to("alice-phone")))
    assert (await desk.login("alice", code=code))[0] == 401
    api_code = desk.code("alice", desk.clock.now + 30)  # the next code: inside the window
    assert (await desk.login("alice", code=api_code))[0] == 200
    await desk.memory.inbound("alice-phone", "/logout")
    await desk.memory.inbound("alice-phone", f"/login {api_code}")
    await wait_for(lambda: any("already used" in t for t in desk.memory.texts_to("alice-phone")))


async def test_csrf_is_required_for_state_changing_calls(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    csrf = await desk.session("alice")
    async with desk.client.post("/api/logout") as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_failed"
    async with desk.client.post("/api/logout", headers={"X-CSRF-Token": "0" * 64}) as response:
        assert response.status == 403
    async with desk.client.get("/api/me") as response:
        assert response.status == 200, "the refused logout did not end the session"
    async with desk.client.post("/api/logout", headers={"X-CSRF-Token": csrf}) as response:
        assert response.status == 200
        assert "carebridge_session=" in response.headers.get("Set-Cookie", "")
    async with desk.client.get("/api/me") as response:
        assert response.status == 401


async def test_nothing_but_login_and_the_document_answers_without_a_session(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    for method, path, _handler in ROUTES:
        url = "/api" + re.sub(r"\{id:[^}]*\}", "1", path).replace("{name}", "alice")
        async with desk.client.request(method, url, json={}) as response:
            if path in ("/login", "/openapi.json"):
                assert response.status in (200, 400), (method, path)
            else:
                assert response.status == 401, (method, path, response.status)
                assert (await response.json())["error"]["code"] == "unauthorized"


async def test_sessions_expire_and_are_cleaned_up(make_desk: DeskFactory) -> None:
    desk = await make_desk('[security]\nsession_ttl = "1h"\n')
    await desk.add_agent("alice")
    await desk.session("alice")
    desk.clock.now += 3601
    async with desk.client.get("/api/me") as response:
        assert response.status == 401
    removed = await desk.bridge.cleanup_sessions()
    assert removed[0] == 1
    jobs = {job.id for job in desk.bridge.scheduler.get_jobs()}
    assert "sessions" in jobs


async def test_console_agent_login_starts_a_shift_and_logout_ends_it(make_desk: DeskFactory) -> None:
    from bridge import agents

    desk = await make_desk()
    alice = await desk.add_agent("alice")
    csrf = await desk.session("alice")
    assert await desk.bridge.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))
    async with desk.client.post("/api/logout", headers={"X-CSRF-Token": csrf}) as response:
        assert response.status == 200
    assert not await desk.bridge.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))


async def test_chat_agents_keep_their_shift_apart_from_console_sessions(make_desk: DeskFactory) -> None:
    from bridge import agents

    desk = await make_desk()
    bob = await desk.add_agent("bob", "memory:bob-phone")
    await desk.session("bob")
    assert not await desk.bridge.store.read(lambda tx: agents.is_online(tx, bob.id, desk.clock.now))
