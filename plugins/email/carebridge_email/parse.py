"""Turn one received mail into an ``InboundMessage`` (stdlib ``email``, ``policy.default``).

What a customer typed is the text/plain body (or the HTML body reduced to
text) with the quoted earlier conversation and the signature cut off: the
agent reads chat, not a growing thread. Finding where the new text ends is a
heuristic (PROTOCOLS §3.5); when it would leave nothing, the whole body is
kept rather than losing what the customer wrote.

Automated mail (auto-replies, bounces, mailing lists) is recognised here so
that it never becomes a customer message and is never answered (RFC 3834).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from bridge import Attachment, InboundMessage

from .config import split_address

CHANNEL = "email"
#: A reply token is what follows ``reply+`` in the local part of one of our addresses.
TOKEN_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MSGID_RE = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_QUOTE_MARKERS = (
    re.compile(r"^\s*On\b.*\bwrote:\s*$", re.I),
    re.compile(r"^\s*Am\b.*\bschrieb\b.*:\s*$", re.I),
    re.compile(r"^\s*Le\b.*\ba écrit\s*:\s*$", re.I),
    re.compile(r"^\s*El\b.*\bescribió:\s*$", re.I),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?From:\*?\s", re.I)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(Sent|Date|To|Subject):\*?\s", re.I)
_SIG_DASH = ("-- ", "--")
_LIST_PRECEDENCE = {"bulk", "list", "junk"}


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """A parsed customer mail: the message for the core and its attachments' bytes by index."""

    message: InboundMessage
    attachment_data: tuple[tuple[bytes, str | None], ...] = ()


def read_mail(raw: bytes) -> EmailMessage:
    """Parse raw RFC 5322 bytes with the modern ``policy.default``."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def automated_reason(mail: EmailMessage, mail_from: str, *, own_address: str) -> str | None:
    """Say why ``mail`` must not become a customer message, or None when it may.

    Never stored: a null envelope sender (bounces, DSNs), ``Auto-Submitted``
    other than ``no``, list or bulk mail (``List-*``, ``Precedence``), and
    mail from our own address (a loop through the MTA).
    """
    if not mail_from.strip() or mail_from.strip() == "<>":
        return "null sender"
    auto = _header(mail, "Auto-Submitted")
    if auto is not None and auto.split(";")[0].strip().lower() != "no":
        return "Auto-Submitted"
    if any(key.lower().startswith("list-") for key in mail.keys()):
        return "mailing list"
    precedence = (_header(mail, "Precedence") or "").strip().lower()
    if precedence in _LIST_PRECEDENCE:
        return f"Precedence: {precedence}"
    if sender_of(mail, mail_from)[0] == own_address.lower():
        return "our own address"
    return None


def sender_of(mail: EmailMessage, mail_from: str) -> tuple[str, str | None]:
    """The author's address (lower-cased) and display name; the envelope sender if From is unusable."""
    for name, address in getaddresses([_header(mail, "From") or ""]):
        if "@" in address:
            return address.strip().lower(), (name.strip() or None)
    return mail_from.strip().strip("<>").lower(), None


def reply_token(recipients: Sequence[str], domain: str) -> str | None:
    """The token of the first ``reply+TOKEN@domain`` recipient, if any."""
    for recipient in recipients:
        try:
            local, rdomain = split_address(recipient)
        except ValueError:
            continue
        base, plus, token = local.partition("+")
        if rdomain == domain and plus and base.lower() == "reply" and TOKEN_RE.match(token):
            return token
    return None


def parse_mail(mail: EmailMessage, raw: bytes, *, mail_from: str, recipients: Sequence[str], domain: str) -> ParsedMail:
    """Build the customer message for ``mail`` (already checked by ``automated_reason``).

    :param raw: the bytes as received, hashed into an id when Message-ID is missing.
    :param recipients: the accepted envelope recipients (our addresses).
    :param domain: our domain, for the reply token.
    """
    sender, name = sender_of(mail, mail_from)
    message_id = _msgids(_header(mail, "Message-ID"))
    external_id = message_id[0] if message_id else f"<{hashlib.sha256(raw).hexdigest()[:40]}@carebridge.invalid>"
    subject = _oneline(_header(mail, "Subject") or "")
    meta: dict[str, str] = {}
    if subject:
        meta["subject"] = subject
    if message_id:
        meta["message_id"] = message_id[0]
    references = _msgids(_header(mail, "References"))
    if references:
        meta["references"] = " ".join(references)
    in_reply_to = _msgids(_header(mail, "In-Reply-To"))
    if in_reply_to:
        meta["in_reply_to"] = " ".join(in_reply_to)
    token = reply_token(recipients, domain)
    if token:
        meta["reply_token"] = token
    language = _language(mail)
    if re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", language):
        meta["language"] = language
    text = strip_quoted(body_text(mail))
    attachments, data = _attachments(mail)
    if not text:  # a subject-only mail, or one that is just a file: the subject says what it is
        text = subject
    message = InboundMessage(
        channel=CHANNEL,
        sender=sender,
        external_id=external_id,
        text=text,
        timestamp=_timestamp(mail),
        sender_name=name,
        reply_to=in_reply_to[0] if in_reply_to else None,
        attachments=tuple(attachments),
        meta=meta,
    )
    return ParsedMail(message=message, attachment_data=tuple(data))


def body_text(mail: EmailMessage) -> str:
    """The text/plain body, else the text/html body reduced to text, else ``""``."""
    part = mail.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return html_to_text(content)
    return content.replace("\r\n", "\n")


def strip_quoted(text: str) -> str:
    """Cut quoted earlier mail and the signature off ``text`` (heuristic, PROTOCOLS §3.5).

    Cuts at an attribution line (``On … wrote:`` and its German, French,
    Spanish forms), ``-----Original Message-----``, an Outlook ``From:``/``Sent:``
    header block or separator; drops ``>``-quoted lines; cuts at the ``-- ``
    signature line. Returns the whole text (trimmed) when that leaves nothing.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _starts_quote(lines, index) or line in _SIG_DASH:
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    result = "\n".join(kept).strip()
    return result or text.strip()


def _starts_quote(lines: list[str], index: int) -> bool:
    line = lines[index]
    if any(marker.match(line) for marker in _QUOTE_MARKERS):
        return True
    # "On Mon, 1 Jan 2026, Ann <ann@example.org>\nwrote:" — clients wrap long attributions.
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if re.match(r"^\s*On\b", line, re.I) and re.match(r"^\s*\S.*\bwrote:\s*$", following):
        return len(line) + len(following) < 200
    if _OUTLOOK_FROM.match(line):
        header = lines[index + 1 : index + 5]
        return sum(1 for nxt in header if _OUTLOOK_NEXT.match(nxt)) >= 2
    return False


class _TextExtractor(HTMLParser):
    """Reduce HTML to text: block elements become line breaks; quotes, scripts and styles vanish."""

    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"})
    _VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source"})
    # Not "head": its end tag may be omitted, which would hide the whole body.
    _SKIP = frozenset({"script", "style", "title", "blockquote"})
    _QUOTE_CLASSES = ("gmail_quote", "moz-cite-prefix", "yahoo_quoted", "divrplyfwdmsg")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.skip_depth: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.out.append("\n")
        if tag in self._VOID:
            return
        self.stack.append(tag)
        if self.skip_depth is None:
            classes = " ".join(v or "" for k, v in attrs if k in ("class", "id")).lower()
            if tag in self._SKIP or any(name in classes for name in self._QUOTE_CLASSES):
                self.skip_depth = len(self.stack)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._VOID or tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if self.skip_depth is not None and len(self.stack) < self.skip_depth:
                self.skip_depth = None
            if top == tag:
                break
        if tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth is None:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Reduce an HTML body to plain text, dropping quoted parts (``blockquote``, Gmail's quote div)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _attachments(mail: EmailMessage) -> tuple[list[Attachment], list[tuple[bytes, str | None]]]:
    found: list[Attachment] = []
    data: list[tuple[bytes, str | None]] = []
    for part in _leaf_attachments(mail):
        mime = part.get_content_type()
        if part.get_content_maintype() == "message":
            inner = part.get_payload(0)
            payload = inner.as_bytes() if isinstance(inner, Message) else b""
        else:
            decoded = part.get_payload(decode=True)
            payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        found.append(Attachment(kind="file", mime=mime, filename=_oneline(filename) if filename else None))
        data.append((payload, mime))
    return found, data


def _leaf_attachments(mail: EmailMessage) -> list[EmailMessage]:
    if not mail.is_multipart() and mail.get_content_maintype() not in ("text", "multipart"):
        return [mail]  # the whole mail is one file (a scanner's PDF, say)
    leaves: list[EmailMessage] = []
    for part in mail.iter_attachments():
        if part.get_content_maintype() == "multipart":
            leaves.extend(p for p in part.walk() if not p.is_multipart() and isinstance(p, EmailMessage))
        else:
            leaves.append(part)
    return leaves


def _header(mail: EmailMessage, name: str) -> str | None:
    try:
        value = mail.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser cannot make sense of
        return None
    return None if value is None else str(value)


def _language(mail: EmailMessage) -> str:
    """The first Content-Language tag, of the whole mail or else of its body part."""
    body = mail.get_body(preferencelist=("plain", "html"))
    for part in (mail, body):
        if isinstance(part, EmailMessage):
            tag = (_header(part, "Content-Language") or "").split(",")[0].strip()
            if tag:
                return tag
    return ""


def _msgids(value: str | None) -> list[str]:
    return _MSGID_RE.findall(value or "")[-20:]


def _oneline(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:998]


def _timestamp(mail: EmailMessage) -> float:
    now = time.time()
    try:
        when = parsedate_to_datetime(_header(mail, "Date") or "").timestamp()
    except (TypeError, ValueError, IndexError):
        return now
    # A Date in the future (a wrong clock) would reorder the transcript.
    return when if 0 < when <= now + 300 else now
