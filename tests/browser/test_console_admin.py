"""Admin pages: agents (add with the QR code once, change, disable), channel health, the audit log."""

from __future__ import annotations

from pathlib import Path

import pyotp
from playwright.async_api import expect

from tests.browser.conftest import PASSWORD, Desk, shoot


async def test_an_admin_adds_an_agent_whose_qr_code_is_an_svg_and_who_can_log_in(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("root", role="admin")
    admin = await desk.agent("root")
    await admin.get_by_role("link", name="Agents").click()
    await expect(admin).to_have_url(desk.url("/admin/agents"))
    await expect(admin.locator('tr[data-agent="root"]')).to_contain_text("admin")

    form = admin.locator("#add-form")
    await form.get_by_label("Username").fill("erin")
    await form.get_by_label("Queues (comma separated, optional)").fill("billing, default")
    await form.get_by_label("Capacity").fill("3")
    await form.get_by_label("Console password").fill(PASSWORD)
    await form.get_by_role("button", name="Add agent").click()
    enrolled = admin.locator("#enrolled")
    await expect(enrolled).to_be_visible()
    await expect(enrolled).to_be_focused()
    qr = admin.locator("#qr > svg")
    await expect(qr).to_have_count(1)
    assert await qr.evaluate("node => node.namespaceURI") == "http://www.w3.org/2000/svg"
    assert await qr.locator("path").count() >= 1
    uri = await admin.get_by_label("Or enter this address in the app").input_value()
    assert uri.startswith("otpauth://totp/") and "erin" in uri
    await expect(admin.locator('tr[data-agent="erin"]')).to_contain_text("billing, default")
    await shoot(admin, tmp_path, "agents")

    # Shown once: hidden on request, and not there after a reload.
    await admin.get_by_role("button", name="Done, hide it").click()
    await expect(admin.locator("#qr svg")).to_have_count(0)
    await admin.reload()
    await expect(admin.locator("#enrolled")).to_be_hidden()

    # The new agent logs in with a code from that address.
    desk.secrets["erin"] = pyotp.parse_uri(uri).secret
    erin = await desk.agent("erin")
    await expect(erin.locator("#me-name")).to_have_text("erin")
    await expect(erin.get_by_role("link", name="Agents")).to_be_hidden()

    # Change her capacity, then disable her: her session ends.
    row = admin.locator('tr[data-agent="erin"]')
    await row.get_by_text("Change").click()
    await row.get_by_label("Capacity of erin").fill("7")
    await row.get_by_role("button", name="Save").click()
    await expect(admin.locator("#flash")).to_have_text("erin was changed.")
    await expect(admin.locator('tr[data-agent="erin"]')).to_contain_text("7")
    admin.once("dialog", lambda dialog: dialog.accept())
    await admin.locator('tr[data-agent="erin"]').get_by_role("button", name="Disable erin").click()
    await expect(admin.locator('tr[data-agent="erin"]')).to_contain_text("disabled")
    await erin.reload()
    await expect(erin).to_have_url(desk.url("/login"))


async def test_an_agent_may_not_open_the_admin_pages(desk: Desk) -> None:
    await desk.add_agent("ann")
    page = await desk.agent("ann")
    await page.goto("/admin/agents")
    await expect(page.locator("#flash")).to_contain_text("only an admin may do this")


async def test_channel_health_and_the_audit_log_with_its_verification(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("root", role="admin")
    admin = await desk.agent("root")
    await admin.get_by_role("link", name="Channel health").click()
    await expect(admin.locator('#channels tr[data-channel="webchat"]')).to_contain_text("connected")
    await expect(admin.locator("#overall")).to_contain_text("Carebridge")
    await expect(admin.locator("#plugins")).to_contain_text("webchat")
    await shoot(admin, tmp_path, "health")

    await admin.get_by_role("link", name="Audit log").click()
    await expect(admin.locator("#verify")).to_contain_text("Verified: the hash chain of all")
    await expect(admin.locator("#entries")).to_contain_text("agent.add")
    await expect(admin.locator("#entries")).to_contain_text("agent.login")
    await admin.get_by_label("Only entries about").fill("no-such-subject")
    await admin.get_by_label("Only entries about").press("Enter")
    await expect(admin.locator("#entries tr")).to_have_count(0)
    await admin.get_by_label("Only entries about").fill("")
    await admin.get_by_role("button", name="Show", exact=True).click()
    await expect(admin.locator("#entries")).to_contain_text("agent.add")
    await shoot(admin, tmp_path, "audit")
