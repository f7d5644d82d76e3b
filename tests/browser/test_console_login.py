"""Logging in to the console: the first-run hint, password and code every time, a wrong code refused."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from tests.browser.conftest import PASSWORD, Desk, shoot


async def test_first_run_names_the_command_then_password_and_code_log_in(desk: Desk, tmp_path: Path) -> None:
    page = await desk.person()
    await page.goto("/login")
    command = page.locator("#first-admin-command")
    # Exactly what a newcomer who ran `make run` types (the daemon runs as `make run` starts it).
    await expect(command).to_have_text(".venv/bin/carebridge agent add admin --channel console --role admin")
    await shoot(page, tmp_path, "login-first-run")

    await desk.add_agent("admin", role="admin")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Authenticator code").fill("000000" if desk.code("admin") != "000000" else "111111")
    await page.get_by_role("button", name="Log in").click()
    error = page.locator("#login-error")
    await expect(error).to_have_text("Wrong username, password or code. Codes change every 30 seconds.")
    await expect(page).to_have_url(desk.url("/login"))
    await shoot(page, tmp_path, "login-refused")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Authenticator code").fill(desk.code("admin"))
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(desk.url("/"))
    await expect(page.locator("#me-name")).to_have_text("admin (admin)")
    await expect(page.get_by_role("link", name="Agents")).to_be_visible()
    await shoot(page, tmp_path, "inbox-empty")

    # Another profile sees no first-run hint any more, and the login page is only the form.
    other = await desk.person()
    await other.goto("/login")
    await expect(other.get_by_label("Authenticator code")).to_be_visible()
    assert await other.locator("#first-admin-command").count() == 0


async def test_a_replayed_code_is_refused_and_a_lock_out_says_how_long(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("ann")
    page = await desk.person()
    await page.goto("/login")
    code = desk.code("ann")

    async def log_in(password: str, totp: str) -> None:
        await page.get_by_label("Username").fill("ann")
        await page.get_by_label("Password").fill(password)
        await page.get_by_label("Authenticator code").fill(totp)
        await page.get_by_role("button", name="Log in").click()

    await log_in(PASSWORD, code)
    await expect(page.locator("#me-name")).to_have_text("ann")
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(desk.url("/login"))
    await log_in(PASSWORD, code)  # the same code again: refused, like any failure
    await expect(page.locator("#login-error")).to_contain_text("Wrong username, password or code")
    # login_max_attempts (5) failures lock the account: the page says for how long.
    for _ in range(5):
        await page.locator("#login-error").evaluate("node => { node.textContent = ''; }")
        await log_in("wrong password", "123456")
        await expect(page.locator("#login-error")).not_to_have_text("")
        if "Locked" in (await page.locator("#login-error").text_content() or ""):
            break
    await expect(page.locator("#login-error")).to_contain_text("Too many failed logins. Locked: try again in")
    await expect(page.get_by_role("button", name="Log in")).to_be_disabled()
    await shoot(page, tmp_path, "login-locked")


async def test_pages_without_a_session_go_to_the_login_page(desk: Desk) -> None:
    page = await desk.person()
    await page.goto("/conversations/7")
    await expect(page).to_have_url(desk.url("/login?next=%2Fconversations%2F7"))
