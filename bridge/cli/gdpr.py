"""``carebridge gdpr export CONTACT`` and ``gdpr erase CONTACT [--yes]``.

CONTACT is a numeric contact id or ``CHANNEL:ADDRESS`` (``whatsapp:+31…``).
Export prints everything stored about the contact, decrypted, as JSON (the
shape of DESIGN §11; times are ISO 8601 UTC). Keys beyond §11: ``contact.email``,
``messages[].attachments`` (kind, mime, meta, size), ``conversations[].events``
(assignments and transfers, their notes decrypted), ``audit[].subject`` (the
audit entries about the contact and about each of their conversations), and
``unreadable: true`` on a record that fails its integrity check. A record that fails its
integrity check is printed with ``"unreadable": true`` and the command exits 1
after printing, naming it on stderr. Erase destroys the contact's data key and
every row of theirs. Both append an audit entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bridge.agents import Addresses, AgentError, normalize_email
from bridge.cli import add_config_option
from bridge.errors import UnknownRecordError
from bridge.models import Address
from bridge.plugins import make_plugin_manager
from bridge.store import Tx, open_store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gdpr export`` and ``gdpr erase``."""
    parser = sub.add_parser("gdpr", help="export or erase a contact's data", description="Subject access and erasure.")
    actions = parser.add_subparsers(dest="gdpr_command", metavar="ACTION")
    actions.required = True
    export = actions.add_parser("export", help="print everything stored about a contact as JSON")
    export.add_argument("contact", metavar="CONTACT", help="contact id or CHANNEL:ADDRESS")
    add_config_option(export)
    export.set_defaults(func=run_export)
    erase = actions.add_parser("erase", help="erase a contact (destroys their data key)")
    erase.add_argument("contact", metavar="CONTACT", help="contact id or CHANNEL:ADDRESS")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_config_option(erase)
    erase.set_defaults(func=run_erase)


def contact_ref(args: argparse.Namespace, ref: str) -> int | Address:
    """A contact id, or an address normalized by its installed channel (an email needs no channel).

    :raises UnknownRecordError: the reference is neither (the message says why).
    """
    ref = ref.strip()
    if ref.isdigit():
        return int(ref)
    try:
        address = Address.parse(ref)
        if address.channel == "email":
            return Address("email", normalize_email(address.address))
        registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
        return Address(address.channel, Addresses(registry.channels).normalize(address.channel, address.address))
    except (ValueError, AgentError) as err:
        raise UnknownRecordError(f"CONTACT must be a contact id or CHANNEL:ADDRESS: {err}") from err


def _find(tx: Tx, ref: int | Address, text: str) -> int:
    contact_id = tx.contacts.find(ref)
    if contact_id is None:
        raise UnknownRecordError(f"no contact {text}")
    return int(contact_id)


def _open(args: argparse.Namespace) -> Any:
    from bridge.config import load_config

    config = load_config(args.config)
    return open_store(config.store, create_missing_key=False, must_exist=True)


def run_export(args: argparse.Namespace) -> int:
    """Print the contact's data; exit 1 after printing if any record was unreadable."""
    from bridge.cli.keys import cli_actor

    ref = contact_ref(args, args.contact)

    async def export() -> tuple[dict[str, Any], list[str]]:
        store = await _open(args)
        try:
            contact_id, document, problems = await store.read(lambda tx: _collect(tx, ref, args.contact))
            await store.write(
                lambda tx: tx.audit.append(
                    cli_actor(), "gdpr.export", f"contact:{contact_id}", {"problems": len(problems)}
                )
            )
            return document, problems
        finally:
            await store.close()

    document, problems = asyncio.run(export())
    try:
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; nothing more to say
        return 1
    for problem in problems:
        print(f"carebridge: unreadable record: {problem}", file=sys.stderr)
    return 1 if problems else 0


def run_erase(args: argparse.Namespace) -> int:
    """Erase the contact after confirmation (``yes`` on stdin, or ``--yes``)."""
    from bridge.cli.keys import cli_actor

    ref = contact_ref(args, args.contact)

    async def erase() -> int:
        store = await _open(args)
        try:
            contact_id, counts = await store.read(lambda tx: _summary(tx, _find(tx, ref, args.contact)))
            if not args.yes:
                sys.stderr.write(
                    f"Erase contact {contact_id} ({counts[0]} conversations, {counts[1]} messages)? "
                    "Their data key is destroyed; this cannot be undone. Type 'yes' to continue: "
                )
                sys.stderr.flush()
                if sys.stdin.readline().strip().lower() != "yes":
                    print("carebridge: erase cancelled", file=sys.stderr)
                    return 1

            def do(tx: Any) -> dict[str, int]:
                done: dict[str, int] = tx.gdpr.erase_contact(contact_id)
                tx.audit.append(cli_actor(), "gdpr.erase", f"contact:{contact_id}", done)
                return done

            done = await store.write(do)
        finally:
            await store.close()
        print(
            f"erased contact {contact_id}: {done['conversations']} conversations, "
            f"{done['messages']} messages, {done['files']} media files; data key destroyed"
        )
        return 0

    return asyncio.run(erase())


def _collect(tx: Tx, ref: int | Address, text: str) -> tuple[int, dict[str, Any], list[str]]:
    contact_id = _find(tx, ref, text)
    document, problems = tx.gdpr.export_contact(contact_id)
    return contact_id, document, problems


def _summary(tx: Tx, contact_id: int) -> tuple[int, tuple[int, int]]:
    return contact_id, tx.conversations.count_of_contact(contact_id)
