"""The config section shape Messenger and Instagram share.

Both sections name one account (a numeric id), its access token, the app
secret that signs webhooks, the verify token of the ``hub.*`` handshake and
the API base. Only the account's and the token's key names, wording and the
default API host differ, so :func:`messaging_schema` declares the section
from them and :class:`MessagingConfig` holds what every Meta messaging
channel reads; each plugin's subclass adds its own two keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from bridge import ChannelSchema, ConfigKey


def messaging_schema(
    channel: str,
    *,
    account_key: str,
    account: str,
    account_expected: str,
    token_key: str,
    token: str,
    graph_url: str,
    graph_url_comment: str,
    doc: str,
) -> ChannelSchema:
    """Declare ``[channels.<channel>]``: the account, its token, ``app_secret``, ``verify_token``, ``graph_url``.

    Ids and tokens may be written as bare numbers in TOML; each is read as text.

    :param account_key: the account id's key (``page_id``); a string of digits.
    :param account: its ``init`` comment (``the Facebook Page's numeric id``).
    :param account_expected: what its error says for a value that is not digits.
    :param token_key: the access token's key (``page_access_token``), a secret.
    :param token: its ``init`` comment.
    :param graph_url: the default API base, version included.
    """
    return ChannelSchema(
        channel,
        ConfigKey(account_key, kind="id", required=True, pattern=r"[0-9]+", invalid=account_expected, comment=account),
        ConfigKey(token_key, kind="id", required=True, secret=True, comment=token),
        ConfigKey("app_secret", kind="id", required=True, secret=True, comment="the app secret that signs webhooks"),
        ConfigKey(
            "verify_token", kind="id", required=True, secret=True, comment="the token typed in the App Dashboard"
        ),
        ConfigKey("graph_url", kind="url", default=graph_url, comment=graph_url_comment),
        doc=doc,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagingConfig:
    """What every Meta messaging channel reads from its section.

    Secrets are left out of ``repr``, so tracebacks and debug logs never show them.

    :param app_secret: the app secret that signs webhook POSTs (``X-Hub-Signature-256``).
    :param verify_token: the token typed in the App Dashboard for the ``hub.*`` handshake.
    :param graph_url: the API base including its version.

    :cvar schema: the section's declaration (:func:`messaging_schema`).
    :cvar account_key: the name of the subclass's account id field, a key of ``schema``.
    :cvar token_key: the name of its access token field, a key of ``schema`` (the
        key an operator is told to renew when Meta refuses the token).
    """

    schema: ClassVar[ChannelSchema]
    account_key: ClassVar[str]
    token_key: ClassVar[str]

    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    graph_url: str
    enabled: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> Self:
        """Validate a raw ``[channels.<name>]`` section (see ``schema``).

        :raises ConfigError: naming ``channels.<name>.<key>`` and what is wrong.
        """
        return cls(**cls.schema.validate(section))

    @property
    def account_id(self) -> str:
        """Our account: ``entry[].id`` of its webhooks, the node its sends are posted to."""
        return str(getattr(self, self.account_key))

    @property
    def token(self) -> str:
        """The access token every send carries (never logged)."""
        return str(getattr(self, self.token_key))
