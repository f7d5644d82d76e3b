"""The Carebridge error tree.

Only ``bridge.cli`` maps these to exit codes and only ``bridge.web`` maps them
to HTTP answers; everything below raises and chains with ``from``.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error Carebridge raises on purpose."""


class ConfigError(BridgeError):
    """A configuration value is missing or wrong; the message names its key path."""


class PluginLoadError(BridgeError):
    """A plugin could not be imported or registered; the message names the plugin."""


class StoreError(BridgeError):
    """The encrypted store cannot be opened or used."""


class StoreWriteError(StoreError):
    """The store could not commit: the disk is full or read-only, an I/O error, or a lock held too long.

    The work was not saved. It is a state of the store, not of one write: it
    shows in ``/healthz`` until a later write succeeds.
    """


class KeyMismatchError(StoreError):
    """The master key given does not match the database."""


class IntegrityError(StoreError):
    """A ciphertext failed authentication: the record was tampered with or moved."""

    def __init__(self, message: str, *, table: str = "", column: str = "", row_id: object = None) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.row_id = row_id


class UnknownRecordError(BridgeError):
    """A contact, agent or conversation named by the user does not exist."""


class ChannelError(BridgeError):
    """Base of errors raised by channel plugins."""


class ChannelAuthError(ChannelError):
    """Credentials were refused by the platform; the channel cannot work until fixed."""


class ChannelUnavailable(ChannelError):
    """The platform cannot be reached now; retrying later may help."""


class DeliveryError(ChannelError):
    """A send failed.

    :param retryable: True when trying again later may succeed (rate limit,
        5xx, network); False when it never will (bad recipient, policy).
    :param code: the platform's error code, for logs and the agent's notice.
    :param retry_after: seconds the platform asked us to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


class WindowClosedError(DeliveryError):
    """The platform's messaging window to this recipient is closed.

    Free text cannot reach the recipient until they write again; the core
    decides the fall-back (a template, email, telling the agent).
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, retryable=False, code=code)


class ChannelAuthFailed(DeliveryError):
    """The platform refused our token while sending (Meta code 190).

    The core stops sending on this channel, marks it degraded and alerts the operator.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, retryable=False, code=code)


class DeliveryUncertain(DeliveryError):
    """The request was written in full but its answer was lost: the platform may have the message.

    Raise it when the connection drops (or times out) after the whole request
    body was sent, e.g. a Graph API call whose HTTP answer never came, or an
    SMTP submission cut off after the message data. The core does not resend
    blindly: it first waits ``[delivery] confirm_wait`` for a report that
    names the delivery (a ``StatusUpdate`` with ``delivery_id``), and a later
    send that the platform accepts is counted as a possible duplicate.

    :param confirmable: the platform reports accepted messages with our
        delivery id (WhatsApp statuses with ``biz_opaque_callback_data``,
        Messenger echoes with ``metadata``), so waiting for that report can
        settle it; False when nothing will ever tell (SMTP).
    """

    def __init__(self, message: str, *, confirmable: bool, code: str | None = "answer_lost") -> None:
        super().__init__(message, retryable=True, code=code)
        self.confirmable = confirmable
