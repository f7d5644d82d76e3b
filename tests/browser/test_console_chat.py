"""A website chat customer and console agents, each in their own browser profile, live both ways."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from tests.browser.conftest import Desk, conversation_link, say, shoot


async def test_a_customer_message_appears_live_and_the_reply_reaches_their_tab(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("alice")
    agent = await desk.agent("alice")
    await expect(agent.locator("#live")).to_have_text("Live")
    customer = await desk.customer("Hello, where is my parcel?", name="Ann Example", email="ann@example.org")
    await shoot(customer, tmp_path, "chat-customer-wrote")

    entry = conversation_link(agent, 1)
    await expect(entry).to_contain_text("#1 Ann Example")
    await expect(entry).to_contain_text("Web chat")
    await expect(entry).to_contain_text("with you")
    await expect(entry.locator(".badge")).to_have_text("1")
    await shoot(agent, tmp_path, "inbox")

    await entry.click()
    await expect(agent).to_have_url(desk.url("/conversations/1"))
    await expect(agent.locator("#transcript .msg.in")).to_contain_text("Hello, where is my parcel?")
    await expect(agent.locator("#summary")).to_contain_text("Ann Example · Web chat · with you")
    reply = agent.get_by_label("Reply to the customer")
    await reply.fill("It left the warehouse this morning.")
    await reply.press("Enter")
    await expect(agent.locator("#transcript .msg.out")).to_contain_text("It left the warehouse this morning.")
    await expect(reply).to_have_value("")

    await expect(customer.locator("#transcript .msg.out")).to_contain_text("It left the warehouse this morning.")
    await shoot(customer, tmp_path, "chat")

    # The customer writes again: the agent's open conversation shows it at once.
    await say(customer, "Thank you!")
    await expect(agent.locator("#transcript .msg.in p").last).to_have_text("Thank you!")
    await shoot(agent, tmp_path, "conversation")

    # A reload (or a new tab) of the customer's page shows the whole conversation again.
    await customer.reload()
    await expect(customer.locator("#transcript .msg")).to_have_count(3)
    await expect(customer.locator("#start")).to_be_hidden()


async def test_shift_enter_is_a_new_line_and_a_note_never_reaches_the_customer(desk: Desk) -> None:
    await desk.add_agent("alice")
    agent = await desk.agent("alice")
    customer = await desk.customer("Two questions")
    await conversation_link(agent, 1).click()
    reply = agent.get_by_label("Reply to the customer")
    await reply.type("first line")
    await reply.press("Shift+Enter")
    await reply.type("second line")
    await expect(reply).to_have_value("first line\nsecond line")
    await reply.press("Enter")
    await expect(customer.locator("#transcript .msg.out p")).to_have_text("first line\nsecond line")

    await agent.get_by_text("Internal note").click()
    await agent.get_by_label("Note (never sent to the customer)").fill("customer is a regular")
    await agent.get_by_role("button", name="Add note").click()
    await expect(agent.locator("#transcript .msg.note")).to_contain_text("customer is a regular")
    await say(customer, "still there?")
    await expect(customer.locator("#transcript")).not_to_contain_text("customer is a regular")


async def test_a_transfer_reaches_a_second_agent_in_another_browser(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("alice")
    await desk.add_agent("bob")
    alice = await desk.agent("alice")
    customer = await desk.customer("I need to change my address", name="Carl")
    await conversation_link(alice, 1).click()
    await expect(alice.locator("#summary")).to_contain_text("with you")
    bob = await desk.agent("bob")
    await expect(bob.locator("#live")).to_have_text("Live")
    assert await conversation_link(bob, 1).count() == 0

    await alice.locator("summary", has_text="Transfer").click()
    await alice.get_by_label("To an agent or a queue").fill("bob")
    await alice.get_by_label("Note for them (optional)").fill("he moved last week")
    await shoot(alice, tmp_path, "transfer")
    await alice.get_by_role("button", name="Transfer", exact=True).click()
    await expect(alice).to_have_url(desk.url("/"))
    await expect(alice.locator("#flash")).to_have_text("Conversation #1 was transferred to bob.")

    entry = conversation_link(bob, 1)
    await expect(entry).to_contain_text("#1 Carl")
    await entry.click()
    await expect(bob.locator("#summary")).to_contain_text("with you")
    await expect(bob.locator("#transcript")).to_contain_text("I need to change my address")
    reply = bob.get_by_label("Reply to the customer")
    await reply.fill("Bob here: done.")
    await reply.press("Enter")
    await expect(customer.locator("#transcript .msg.out").last).to_contain_text("Bob here: done.")
    await shoot(bob, tmp_path, "transfer-received")


async def test_a_waiting_conversation_is_taken_from_the_inbox_and_a_close_tells_the_customer(desk: Desk) -> None:
    await desk.add_agent("alice", capacity=1)
    alice = await desk.agent("alice")
    first = await desk.customer("First question")
    await expect(conversation_link(alice, 1)).to_contain_text("with you")
    second = await desk.customer("Second question")  # alice is full: it waits
    await expect(second.locator("#transcript .msg.system")).to_contain_text("busy")
    await expect(conversation_link(alice, 2)).to_contain_text("waiting in default")

    await conversation_link(alice, 1).click()
    alice.once("dialog", lambda dialog: dialog.accept())
    await alice.get_by_role("button", name="Close conversation").click()
    await expect(alice.locator("#summary")).to_contain_text("closed")
    await expect(alice.get_by_label("Reply to the customer")).to_be_hidden()
    await expect(first.locator("#transcript .msg.system").last).to_contain_text("closed")

    await alice.goto("/conversations/2")
    await alice.get_by_role("button", name="Take this conversation").click()
    await expect(alice.locator("#summary")).to_contain_text("with you")
    await expect(alice.get_by_label("Reply to the customer")).to_be_focused()
    await alice.get_by_label("Reply to the customer").fill("Sorry for the wait!")
    await alice.get_by_label("Reply to the customer").press("Enter")
    await expect(second.locator("#transcript .msg.out")).to_contain_text("Sorry for the wait!")
