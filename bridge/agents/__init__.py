"""Agents: who answers customers, how they log in, and what an admin may type about them.

``directory`` holds the rules of enrolment, shifts and routing candidates;
``fields`` checks what an admin types (names, queues, addresses);
``passwords`` and ``totp`` are the two factors of every login.
"""

from __future__ import annotations

from bridge.agents.addresses import Addresses
from bridge.agents.directory import (
    Candidate,
    address_owner,
    create_agent,
    disable,
    end_shift,
    find_agent_by_identity,
    is_online,
    online_candidates,
    require_agent,
    set_channel,
    start_shift,
    touch_identity,
)
from bridge.agents.fields import (
    DEFAULT_QUEUE,
    ROLES,
    AgentError,
    mask_address,
    normalize_email,
    validate_name,
    validate_queues,
)
from bridge.store import Agent

__all__ = [
    "Addresses",
    "Agent",
    "AgentError",
    "Candidate",
    "DEFAULT_QUEUE",
    "ROLES",
    "address_owner",
    "create_agent",
    "disable",
    "end_shift",
    "find_agent_by_identity",
    "is_online",
    "mask_address",
    "normalize_email",
    "online_candidates",
    "require_agent",
    "set_channel",
    "start_shift",
    "touch_identity",
    "validate_name",
    "validate_queues",
]
