"""What every page promises: a strict CSP, nothing from another origin, phone width, keyboard only, masking."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import ConsoleMessage, Page, Request, Response, expect

from tests.browser.conftest import PASSWORD, Desk, conversation_link, same_origin, shoot

IBAN = "NL91 ABNA 0417 1643 00"


class Recorder:
    """Every request a page makes, the CSP of every document it loads, and every policy violation it logs."""

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.policies: dict[str, str | None] = {}
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("console", self._console)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _response(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.policies[response.url] = response.headers.get("content-security-policy")

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs each blocked inline script or style and each refused load ("Refused to ...").
        if message.type == "error" and ("Refused to" in message.text or "Content Security Policy" in message.text):
            self.errors.append(message.text)


async def test_every_page_has_a_strict_policy_and_loads_nothing_from_elsewhere(desk: Desk) -> None:
    origin = desk.url("").rstrip("/")
    customer = await desk.person()
    seen_by_customer = Recorder(customer)
    await customer.goto("/chat")
    await customer.get_by_label("Your message").fill("hello")
    await customer.get_by_label("Your message").press("Enter")
    await expect(customer.locator("#transcript .msg.in")).to_contain_text("hello")

    await desk.add_agent("root", role="admin")
    page = await desk.person()
    seen = Recorder(page)
    await page.goto("/login")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Authenticator code").fill(desk.code("root"))
    await page.get_by_role("button", name="Log in").click()
    await expect(conversation_link(page, 1)).to_be_visible()
    for path, ready in (
        ("/conversations/1", "#transcript .msg.in"),
        ("/admin/agents", 'tr[data-agent="root"]'),
        ("/admin/health", '#channels tr[data-channel="webchat"]'),
        ("/admin/audit", "#entries tr"),
    ):
        await page.goto(path)
        await page.locator(ready).first.wait_for()

    for recorder, documents in ((seen, 6), (seen_by_customer, 1)):
        assert recorder.requests and all(same_origin(url, origin) for url in recorder.requests), recorder.requests
        assert len(recorder.policies) == documents, recorder.policies
        for url, policy in recorder.policies.items():
            assert policy is not None, url
            assert "default-src" in policy and "script-src 'self'" in policy, (url, policy)
            assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy, (url, policy)
        assert recorder.errors == [], recorder.errors
    console_policy = seen.policies[desk.url("/admin/audit")] or ""
    assert console_policy.startswith("default-src 'self'")


async def test_the_policy_is_enforced_an_injected_inline_script_does_not_run(desk: Desk) -> None:
    page = await desk.person()
    seen = Recorder(page)
    response = await page.goto("/login")
    assert response is not None
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    ran = await page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.head.append(script);
            return window.injected === true;
        }"""
    )
    assert ran is False
    for _ in range(100):  # the violation report arrives as a console message, asynchronously
        if seen.errors:
            break
        await asyncio.sleep(0.05)
    assert any("inline script" in error for error in seen.errors), seen.errors


async def test_keyboard_only_login_and_reply(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("kim")
    customer = await desk.customer("Can you hear me?")
    page = await desk.person()
    await page.goto("/login")
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.keyboard.type("kim")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Tab")
    await page.keyboard.type(desk.code("kim"))
    await page.keyboard.press("Enter")
    await expect(conversation_link(page, 1)).to_be_visible()

    for _ in range(20):  # Tab through the page to the conversation
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.conversation") == "1":
            break
    await expect(conversation_link(page, 1)).to_be_focused()
    await shoot(page, tmp_path, "keyboard-inbox", full_page=False)
    await page.keyboard.press("Enter")
    reply = page.get_by_label("Reply to the customer")
    await expect(reply).to_be_focused()
    await page.keyboard.type("Loud and clear.")
    await page.keyboard.press("Enter")
    await expect(customer.locator("#transcript .msg.out")).to_contain_text("Loud and clear.")
    await expect(reply).to_be_focused()


async def test_pages_fit_a_phone(desk: Desk, tmp_path: Path) -> None:
    phone = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}
    await desk.add_agent("root", role="admin")
    customer = await desk.customer("Typing on my phone", name="Pat", **phone)
    agent = await desk.agent("root", **phone)

    async def fits(page: Page, name: str) -> None:
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        await shoot(page, tmp_path, name)

    await expect(conversation_link(agent, 1)).to_be_visible()
    await fits(agent, "phone-inbox")
    await conversation_link(agent, 1).click()
    await expect(agent.locator("#transcript .msg.in")).to_contain_text("Typing on my phone")
    await fits(agent, "phone-conversation")
    await agent.goto("/admin/agents")
    await agent.locator('tr[data-agent="root"]').wait_for()
    await fits(agent, "phone-agents")
    await fits(customer, "phone-chat")


async def test_a_sensitive_value_is_masked_until_revealed_and_the_reveal_is_audited(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("root", role="admin")
    agent = await desk.agent("root")
    await desk.customer(f"My IBAN is {IBAN}, please refund")
    await conversation_link(agent, 1).click()
    message = agent.locator("#transcript .msg.in")
    await expect(message).to_contain_text("[hidden iban]")
    await expect(message).not_to_contain_text(IBAN)
    await shoot(agent, tmp_path, "sensitive-masked")
    await message.get_by_role("button", name="Reveal the sensitive values of this message").click()
    await expect(message.locator("p")).to_have_text(f"My IBAN is {IBAN}, please refund")
    await expect(message).to_contain_text("revealed")
    await shoot(agent, tmp_path, "sensitive-revealed")

    await agent.goto("/admin/audit")
    await agent.get_by_label("Only entries about").fill("conversation:1")
    await agent.get_by_label("Only entries about").press("Enter")
    await expect(agent.locator("#entries")).to_contain_text("conversation.reveal")
