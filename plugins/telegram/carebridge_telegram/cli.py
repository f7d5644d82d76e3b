"""``carebridge telegram set-webhook [-c FILE] [--drop-pending-updates]``.

Telegram only posts updates to a URL the bot registered with ``setWebhook``,
together with the secret it will send back in every update's header. The
daemon never calls ``setWebhook`` itself: registering is a deliberate
operator step (it replaces whatever webhook the bot had), done once after
``[server] public_url`` and ``[channels.telegram]`` are configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp

from bridge import BridgeError, DeliveryError, add_config_option

from .api import Answer, BotApi
from .configfile import load_cli_settings
from .webhook import CHANNEL

#: The update kinds the channel reads; Telegram then sends no others.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
WEBHOOK_PATH = f"/webhooks/{CHANNEL}"


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``telegram`` and its actions to the ``carebridge`` CLI."""
    parser = subparsers.add_parser(
        "telegram", help="Telegram channel tasks (set-webhook)", description="Telegram channel tasks."
    )
    actions = parser.add_subparsers(dest="telegram_command", metavar="ACTION")
    actions.required = True
    set_webhook = actions.add_parser(
        "set-webhook",
        help="register <public_url>/webhooks/telegram and the webhook secret with the Bot API",
        description="Call the Bot API's setWebhook with [server] public_url + /webhooks/telegram, "
        "channels.telegram.webhook_secret as secret_token and the update kinds the channel reads.",
    )
    set_webhook.add_argument(
        "--drop-pending-updates", action="store_true", help="discard the updates Telegram is still holding for the bot"
    )
    add_config_option(set_webhook)
    set_webhook.set_defaults(func=run_set_webhook)


def run_set_webhook(args: argparse.Namespace) -> int:
    """Call ``setWebhook``, print the Bot API's answer; exit 0 if it accepted, else 1.

    :raises BridgeError: the configuration is incomplete, the Bot API cannot
        be reached, or it refused (the CLI prints the reason and exits 1).
    """
    settings = load_cli_settings(args.config)
    payload: dict[str, Any] = {
        "url": settings.public_url + WEBHOOK_PATH,
        "secret_token": settings.telegram.webhook_secret,
        "allowed_updates": list(ALLOWED_UPDATES),
    }
    if args.drop_pending_updates:
        payload["drop_pending_updates"] = True
    answer = asyncio.run(_set_webhook(settings.telegram.api_url, settings.telegram.bot_token, payload))
    print(f"setWebhook {payload['url']}: {json.dumps(answer.body) if answer.body is not None else answer.description}")
    if not answer.ok:
        raise BridgeError(f"the Bot API refused setWebhook (HTTP {answer.status}): {answer.description}")
    return 0


async def _set_webhook(api_url: str, token: str, payload: dict[str, Any]) -> Answer:
    async with aiohttp.ClientSession() as http:
        try:
            return await BotApi(http, api_url, token).request("setWebhook", payload)
        except DeliveryError as err:
            raise BridgeError(f"cannot reach the Bot API at {api_url}: {err}") from None
