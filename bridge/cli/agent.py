"""``carebridge agent add | list | set-channel | identity add|remove | disable``: manage agents.

Works while the daemon runs: every change is one store transaction, and the
daemon reads agents from the store on every message, so it sees the change
at once. ``add`` enrols TOTP (prints the otpauth:// URI and a terminal QR
code) and the console password; ``set-channel`` moves the agent and retires
the address they leave (a message from it is no longer theirs); ``identity``
adds or retires other addresses the agent writes from, and ``list`` shows
them all, masked; ``disable`` also ends the agent's shift and hands their
open conversations to colleagues or back to the queue. Every change is
written to the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bridge import agents
from bridge.agents import ROLES, Addresses, Agent, AgentError, directory, passwords, totp
from bridge.cli import add_config_option
from bridge.errors import BridgeError
from bridge.models import Address
from bridge.store import open_store

T = TypeVar("T")


def _capacity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("expected a number from 1 to 1000")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``agent`` and its actions."""
    parser = sub.add_parser("agent", help="add, list, change or disable agents", description="Manage agents.")
    actions = parser.add_subparsers(dest="agent_command", metavar="ACTION")
    actions.required = True

    add = actions.add_parser("add", help="enrol an agent (TOTP and console password)")
    add.add_argument("name", metavar="NAME", help="username: a letter, then letters, digits, '.', '_' or '-'")
    add.add_argument(
        "--channel", required=True, metavar="CHANNEL:ADDRESS",
        help="where the agent receives conversations: whatsapp:+E164, messenger:PSID, email:ADDR, console",
    )  # fmt: skip
    add.add_argument("--role", choices=ROLES, default="agent")
    add.add_argument("--email", metavar="ADDR", help="the agent's email address")
    add.add_argument(
        "--queue", action="append", default=[], metavar="Q", help="a queue served (repeatable; default: default)"
    )
    add.add_argument(
        "--capacity", type=_capacity, default=5, metavar="N", help="open conversations at most (default 5)"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the console password as one line from stdin")
    add_config_option(add)
    add.set_defaults(func=run_add)

    listing = actions.add_parser("list", help="list agents (addresses masked)")
    add_config_option(listing)
    listing.set_defaults(func=run_list)

    set_channel = actions.add_parser(
        "set-channel", help="change where an agent receives conversations (the old address is retired)"
    )
    set_channel.add_argument("name", metavar="NAME")
    set_channel.add_argument("address", metavar="CHANNEL:ADDRESS")
    add_config_option(set_channel)
    set_channel.set_defaults(func=run_set_channel)

    identity = actions.add_parser("identity", help="add or retire an address an agent writes from")
    identity_actions = identity.add_subparsers(dest="identity_command", metavar="ACTION")
    identity_actions.required = True
    for action, func, text in (
        ("add", run_identity_add, "let the agent also write from CHANNEL:ADDRESS"),
        ("remove", run_identity_remove, "retire CHANNEL:ADDRESS: messages from it are no longer the agent's"),
    ):
        parser_ = identity_actions.add_parser(action, help=text)
        parser_.add_argument("name", metavar="NAME")
        parser_.add_argument("address", metavar="CHANNEL:ADDRESS")
        add_config_option(parser_)
        parser_.set_defaults(func=func)

    disable = actions.add_parser("disable", help="disable an agent; their conversations go to colleagues or the queue")
    disable.add_argument("name", metavar="NAME")
    add_config_option(disable)
    disable.set_defaults(func=run_disable)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _registry(args: argparse.Namespace) -> Any:
    registry = getattr(args, "plugin_registry", None)
    if registry is None:
        from bridge.plugins import make_plugin_manager

        registry = make_plugin_manager()
    return registry


def _address(args: argparse.Namespace, text: str, what: str) -> Address:
    """Parse ``CHANNEL:ADDRESS`` with the installed channel's own address rule."""
    try:
        return Addresses(_registry(args).channels).parse(text)
    except AgentError as err:
        raise AgentError(f"{what}: {err}") from err


def _with_store(config: Any, fn: Callable[[Any], Any], *, read: bool = False, must_exist: bool = True) -> Any:
    """Open the store, run ``fn`` in one write (or read), close it."""

    async def go() -> Any:
        store = await open_store(config.store, create_missing_key=not must_exist, must_exist=must_exist)
        try:
            return await (store.read(fn) if read else store.write(fn))
        finally:
            await store.close()

    return asyncio.run(go())


def _refuse_taken(config: Any, name: str, address: Address) -> None:
    """Say "taken" before asking for a password (the write checks again, atomically)."""
    if not Path(config.store.path).exists():  # no SQLite store yet (PostgreSQL: the write checks, atomically)
        return

    def check(tx: Any) -> None:
        if tx.agents.get_by_name(name) is not None:
            raise AgentError(f"an agent named {name!r} already exists")
        owner = agents.address_owner(tx, address)
        if owner is not None:
            raise AgentError(f"{address.channel} address already belongs to agent {owner.name!r}")

    _with_store(config, check, read=True)


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        if not sys.stdin.isatty():
            raise BridgeError("no terminal to ask for the console password on: pass it with --password-stdin")
        password = getpass.getpass(f"Console password for {name}: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise BridgeError("the passwords do not match")
    passwords.check_policy(password)
    return password


def _print_qr(uri: str) -> None:
    import segno

    qr = segno.make(uri, error="m")
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "▀▄█".encode(encoding)
        compact = True
    except (UnicodeEncodeError, LookupError):
        compact = False
    qr.terminal(out=sys.stdout, compact=compact)


def run_add(args: argparse.Namespace) -> int:
    """Enrol the agent; print the otpauth:// URI and its QR code on stdout."""
    from bridge.config import load_config

    config = load_config(args.config)
    address = _address(args, args.channel, "--channel")
    agents.validate_name(args.name)
    agents.validate_queues(args.queue)
    if args.email is not None:
        try:
            agents.normalize_email(args.email)
        except AgentError as err:
            raise AgentError(f"--email: {err}") from err
    _refuse_taken(config, args.name, address)
    password_hash = passwords.hash_password(_read_password(args.name, args.password_stdin))
    secret = totp.new_secret()

    def enrol(tx: Any) -> Agent:
        agent = agents.create_agent(
            tx, name=args.name, address=address, role=args.role, email=args.email, queues=args.queue,
            capacity=args.capacity, totp_secret=secret, password_hash=password_hash,
        )  # fmt: skip
        detail = {"name": agent.name, "role": agent.role, "channel": agent.channel, "queues": list(agent.queues)}
        tx.audit.append(_actor(), "agent.add", f"agent:{agent.id}", detail)
        return agent

    agent: Agent = _with_store(config, enrol, must_exist=False)
    uri = totp.provisioning_uri(secret, account=agent.name, issuer=config.security.totp_issuer)
    print(uri)
    _print_qr(uri)
    sys.stdout.flush()
    where = "the web console" if agent.channel == "console" else agents.mask_address(agent.preferred)
    print(
        f"Agent {agent.name} added ({agent.role}, {where}, queues {', '.join(agent.queues)},"
        f" capacity {agent.capacity}).\n"
        "Scan the QR code (or enter the URI above) in an authenticator app, then send /login CODE.",
        file=sys.stderr,
    )
    return 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per agent; addresses are masked."""
    from bridge.config import load_config

    config = load_config(args.config)
    now = time.time()

    def collect(tx: Any) -> list[list[str]]:
        rows = []
        for agent in tx.agents.all():
            online = agents.is_online(tx, agent.id, now)
            known = [agents.mask_address(a) for a in directory.identities(tx, agent.id)]
            rows.append([
                agent.name, agent.role, agents.mask_address(agent.preferred), ",".join(agent.queues),
                str(agent.capacity), "yes" if online else "no", "yes" if agent.disabled else "no",
                ",".join(known) or "-",
            ])  # fmt: skip
        return rows

    rows = _with_store(config, collect, read=True)
    if not rows:
        print("No agents yet. Add one with: carebridge agent add NAME --channel CHANNEL:ADDRESS", file=sys.stderr)
        return 0
    print(_table([["NAME", "ROLE", "CHANNEL", "QUEUES", "CAPACITY", "ONLINE", "DISABLED", "IDENTITIES"], *rows]))
    return 0


def run_set_channel(args: argparse.Namespace) -> int:
    """Change the agent's preferred channel and address."""
    from bridge.config import load_config

    config = load_config(args.config)
    address = _address(args, args.address, "CHANNEL:ADDRESS")

    def change(tx: Any) -> tuple[Agent, bool]:
        agent = agents.require_agent(tx, args.name)
        updated = agents.set_channel(tx, agent.id, address)
        retired = agent.address != "" and agent.preferred != updated.preferred
        detail = {"from": agent.channel, "to": updated.channel, "retired": agent.channel if retired else None}
        tx.audit.append(_actor(), "agent.set_channel", f"agent:{agent.id}", detail)
        return updated, retired

    agent, retired = _with_store(config, change)
    line = f"{agent.name} now receives conversations on {agents.mask_address(agent.preferred)}."
    print(line + (" The previous address is retired." if retired else ""))
    return 0


def run_identity_add(args: argparse.Namespace) -> int:
    """Add an address the agent is recognised by."""
    from bridge.config import load_config

    config = load_config(args.config)
    address = _address(args, args.address, "CHANNEL:ADDRESS")

    def change(tx: Any) -> bool:
        agent = agents.require_agent(tx, args.name)
        added = directory.add_identity(tx, agent.id, address)
        if added:
            tx.audit.append(_actor(), "agent.identity_add", f"agent:{agent.id}", {"channel": address.channel})
        return added

    added = _with_store(config, change)
    masked = agents.mask_address(address)
    print(f"{args.name} can now write from {masked}." if added else f"{masked} already was {args.name}'s.")
    return 0


def run_identity_remove(args: argparse.Namespace) -> int:
    """Retire an address: messages from it are no longer the agent's."""
    from bridge.config import load_config

    config = load_config(args.config)
    address = _address(args, args.address, "CHANNEL:ADDRESS")

    def change(tx: Any) -> None:
        agent = agents.require_agent(tx, args.name)
        directory.remove_identity(tx, agent.id, address)
        tx.audit.append(_actor(), "agent.identity_remove", f"agent:{agent.id}", {"channel": address.channel})

    _with_store(config, change)
    print(f"{agents.mask_address(address)} is retired: messages from it are no longer {args.name}'s.")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    """Disable the agent, end their shift, and requeue their open conversations."""
    from bridge.config import load_config
    from bridge.relay.commands import open_conversation_ids
    from bridge.relay.routing import requeue

    config = load_config(args.config)
    rctx = _relay_context(args, config)

    def change(tx: Any) -> tuple[bool, int]:
        agent = agents.require_agent(tx, args.name)
        if agent.disabled:
            return False, 0
        agents.disable(tx, agent.id)
        open_ids = open_conversation_ids(tx, agent.id)
        for conversation_id in reversed(open_ids):
            requeue(tx, rctx, conversation_id)
        tx.audit.append(_actor(), "agent.disable", f"agent:{agent.id}", {"requeued": len(open_ids)})
        return True, len(open_ids)

    changed, moved = _with_store(config, change)
    if not changed:
        print(f"{args.name} was already disabled.")
    else:
        print(f"{args.name} is disabled; {moved} open conversation(s) went to colleagues or back to the queue.")
    return 0


def _relay_context(args: argparse.Namespace, config: Any) -> Any:
    """The relay context the daemon would use, so requeueing routes exactly as it would."""
    from bridge.relay.command_table import CommandTable
    from bridge.relay.context import RelayContext
    from bridge.relay.rules import load_rules
    from bridge.relay.templates import load_templates

    registry = _registry(args)
    enabled = [name for name in config.enabled_channels() if name in registry.channels]
    return RelayContext(
        config=config, hooks=registry.hooks, templates=load_templates(config.templates.file),
        rules=load_rules(config.routing.rules_file), addresses=Addresses(registry.channels), commands=CommandTable(),
        windows={name: registry.channels[name].reply_window for name in enabled},
        channels=frozenset(enabled) | {"console"},
        first_line=frozenset(name for name in enabled if registry.channels[name].commands_in_first_line),
    )  # fmt: skip
