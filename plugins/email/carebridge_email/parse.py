"""Turn one received mail into an ``InboundMessage`` (stdlib ``email``, ``policy.default``).

What a customer typed is the text/plain body (or the HTML body reduced to
text) with the quoted earlier conversation and the signature cut off: the
agent reads chat, not a growing thread. Finding where the new text ends is a
heuristic (PROTOCOLS §3.5); when it would leave nothing, the whole body is
kept rather than losing what the customer wrote.

Every mail we send carries a "reply above this line" marker (``REPLY_MARKER``):
everything from it down is cut, whatever the client's quote header looks
like. Without the marker, the quote headers of Outlook, Gmail, Apple Mail
and Thunderbird in English, Dutch, German and French are recognised.

Who sent a mail is only what its From claims. ``authenticity`` reads the
receiving MTA's ``Authentication-Results`` (RFC 8601, parsed by ``authres``)
and trusts it only from an authserv-id the operator listed: ``dmarc=pass``,
or an aligned ``dkim=pass``, for the From domain vouches for the sender.
The core decides what an unproven sender may do.

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
from typing import Any

import authres  # type: ignore[import-untyped]  # ships no type information

from bridge import Attachment, InboundMessage

from .config import split_address

CHANNEL = "email"
#: A reply token is what follows ``reply+`` in the local part of one of our addresses.
TOKEN_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: The first line of every mail we send: an answer is what is written above it.
REPLY_MARKER = "##- Please type your reply above this line -##"
_MARKER_RE = re.compile(r"type your reply above this line", re.I)
_MSGID_RE = re.compile(r"<[^<>\s]+@[^<>\s]+>")
# Attribution lines of Gmail, Apple Mail and Thunderbird (and Outlook on the web) in English,
# Dutch, German and French, plus Spanish: "On … wrote:", "Op … schreef …:", "Op … heeft … het
# volgende geschreven:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:".
_ATTRIBUTIONS = (
    re.compile(r"^\s*On\b.*\bwrote\s*:\s*$", re.I | re.S),
    re.compile(r"^\s*Op\b.*\b(schreef|geschreven)\b.*:\s*$", re.I | re.S),
    re.compile(r"^\s*Am\b.*\bschrieb\b.*:\s*$", re.I | re.S),
    re.compile(r"^\s*Le\b.*\ba\s+écrit\s*:\s*$", re.I | re.S),
    re.compile(r"^\s*El\b.*\bescribió\s*:\s*$", re.I | re.S),
)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Op|Am|Le|El)\b", re.I)
_SEPARATORS = (
    # Outlook's separators, and forwarded-message lines of Gmail and Apple Mail, in the four languages.
    re.compile(
        r"^\s*-{2,}\s*(Original Message|Oorspronkelijk bericht|Ursprüngliche Nachricht|Message d'origine"
        r"|Forwarded message|Doorgestuurd bericht|Weitergeleitete Nachricht|Message transféré)\s*-{2,}\s*$",
        re.I,
    ),
    re.compile(
        r"^\s*(Begin forwarded message|Begin doorgestuurd bericht|Anfang der weitergeleiteten Nachricht"
        r"|Début du message réexpédié)\s*:\s*$",
        re.I,
    ),
    re.compile(r"^\s*_{10,}\s*$"),
)
# Outlook's header block: "From:/Van:/Von:/De :" followed by Sent/Date/To/Cc/Subject lines.
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|Van|Von|De)\s*:\*?\s", re.I)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(Sent|Date|To|Cc|Subject|Verzonden|Datum|Aan|Onderwerp|Gesendet|An|Betreff|Envoyé|À|A|Objet)"
    r"\s*:\*?\s",
    re.I,
)
_SIG_DASH = ("-- ", "--")
_LIST_PRECEDENCE = {"bulk", "list", "junk"}
# The Subject of an answer to a bridge mail ("Re: [#42 Jan · Email]"): never a customer text.
_BRIDGE_SUBJECT = re.compile(r"\[#\d+ ")


class MailError(ValueError):
    """A mail that cannot become a message (no sender address); the text says why, without content."""


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
    other than ``no``, list or bulk mail (``List-*``, ``Precedence``), mail
    from our own address (a loop through the MTA) and delivery or read
    reports (``multipart/report``, which IMAP delivers without an envelope).
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
    if mail.get_content_type() == "multipart/report":
        return "delivery or read report"
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


def authenticity(mail: EmailMessage, trusted: Sequence[str]) -> bool | None:
    """Whether a trusted ``Authentication-Results`` vouches for the From domain.

    None when no authserv-id is trusted (nothing can be checked). Otherwise
    the topmost header from a trusted authserv-id decides (a receiving MTA
    prepends its own; one the sender wrote sits below it, and the MTA must
    remove any carrying its id): True for ``dmarc=pass`` with
    ``header.from`` the From domain, or ``dkim=pass`` whose ``header.d``
    (or ``header.i``) is that domain or a parent of it; False otherwise,
    including a From with other than exactly one address.
    """
    ids = {i.strip().lower() for i in trusted if i.strip()}
    if not ids:
        return None
    addresses = [a for _n, a in getaddresses([_header(mail, "From") or ""]) if "@" in a]
    if len(addresses) != 1:
        return False
    domain = addresses[0].rpartition("@")[2].strip().lower().rstrip(".")
    for value in _all_headers(mail, "Authentication-Results"):
        try:
            header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
        except (authres.AuthResError, ValueError, IndexError, AttributeError):
            continue  # not ours to read; a forged or broken one proves nothing
        if str(header.authserv_id or "").strip().lower() not in ids:
            continue
        return any(_vouches(result, domain) for result in header.results)
    return False


def _vouches(result: Any, domain: str) -> bool:
    if str(result.result or "").lower() != "pass":
        return False
    values = {f"{p.type}.{p.name}": str(p.value or "").strip().lower().rstrip(".") for p in result.properties}
    if result.method == "dmarc":
        return values.get("header.from") == domain
    if result.method == "dkim":
        signer = values.get("header.d") or values.get("header.i", "").rpartition("@")[2]
        return bool(signer) and "." in signer and (domain == signer or domain.endswith("." + signer))
    return False


def external_id_of(sender: str, message_id: str | None, raw: bytes) -> str:
    """The id the core de-duplicates on: a digest of the sender and the Message-ID.

    A Message-ID is chosen by whoever sends the mail: alone it would let one
    sender's mail hide another's with the same id. Without a Message-ID the
    bytes themselves stand in (an MTA's redelivery is the same bytes).
    """
    basis = message_id or "raw:" + hashlib.sha256(raw).hexdigest()
    return "mail:" + hashlib.sha256(f"{sender}\n{basis}".encode()).hexdigest()[:40]


def parse_mail(
    mail: EmailMessage,
    raw: bytes,
    *,
    mail_from: str,
    recipients: Sequence[str],
    domain: str,
    trusted_authserv_ids: Sequence[str] = (),
) -> ParsedMail:
    """Build the customer message for ``mail`` (already checked by ``automated_reason``).

    :param raw: the bytes as received, hashed into an id when Message-ID is missing.
    :param recipients: the accepted envelope recipients (our addresses).
    :param domain: our domain, for the reply token.
    :param trusted_authserv_ids: whose ``Authentication-Results`` vouch for senders.
    """
    sender, name = sender_of(mail, mail_from)
    try:
        split_address(sender)
    except ValueError as err:
        raise MailError("no usable sender address in From or the envelope") from err
    message_id = _msgids(_header(mail, "Message-ID"))
    external_id = external_id_of(sender, message_id[0] if message_id else None, raw)
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
    if not text and not _BRIDGE_SUBJECT.search(subject):
        # A subject-only mail, or one that is just a file: the subject says what it is. Not so
        # for an answer to a bridge mail, whose subject is our own label.
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
        authenticated=authenticity(mail, trusted_authserv_ids),
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

    Everything from our ``REPLY_MARKER`` down is cut, with the attribution
    line just above it. Without the marker: cuts at an attribution line
    (``On … wrote:`` and its Dutch, German, French and Spanish forms, also
    wrapped over two lines), an Outlook header block (``From:``/``Van:``/
    ``Von:``/``De :`` followed by ``Sent:``, ``Date:``, ``To:`` … in the same
    languages) or separator; drops ``>``-quoted lines; cuts at the ``-- ``
    signature line. Returns the whole text (trimmed) when that leaves
    nothing, except below a marker, which is never kept.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        if _MARKER_RE.search(line):
            return _strip_lines(_drop_attribution(lines[:index])).strip()
    return _strip_lines(lines).strip() or text.strip()


def _strip_lines(lines: list[str]) -> str:
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _starts_quote(lines, index) or line in _SIG_DASH:
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept)


def _drop_attribution(lines: list[str]) -> list[str]:
    """Lines above the marker without the client's attribution ("… wrote:") right above it."""
    end = len(lines)
    while end and not lines[end - 1].strip().lstrip(">").strip():
        end -= 1
    if end and lines[end - 1].rstrip().endswith(":"):
        end -= 1
        if end and _ATTRIBUTION_START.match(lines[end - 1]) and not lines[end - 1].rstrip().endswith(":"):
            end -= 1  # the first half of a wrapped attribution
    return lines[:end]


def _starts_quote(lines: list[str], index: int) -> bool:
    line = lines[index]
    if any(marker.match(line) for marker in _ATTRIBUTIONS) or any(sep.match(line) for sep in _SEPARATORS):
        return True
    # "On Mon, 1 Jan 2026, Ann <ann@example.org>\nwrote:" — clients wrap long attributions.
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if _ATTRIBUTION_START.match(line) and following.strip() and len(line) + len(following) < 240:
        joined = f"{line.rstrip()} {following.strip()}"
        if any(marker.match(joined) for marker in _ATTRIBUTIONS):
            return True
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
    """Every part that is not the text itself: files, forwarded mails and inline images.

    Inline images of ``multipart/related`` (a logo in a signature, a pasted
    screenshot) are attachments too; text/plain and text/html parts are the
    body and its alternatives unless they carry a file name or say
    ``attachment``.
    """
    if not mail.is_multipart() and mail.get_content_maintype() not in ("text", "multipart"):
        return [mail]  # the whole mail is one file (a scanner's PDF, say)
    body = mail.get_body(preferencelist=("plain", "html"))
    leaves: list[EmailMessage] = []

    def visit(part: EmailMessage) -> None:
        if part is not mail and part.get_content_maintype() == "message":
            leaves.append(part)  # a forwarded mail is one file
        elif part.is_multipart():
            for sub in part.iter_parts():
                if isinstance(sub, EmailMessage):
                    visit(sub)
        elif part is not body and (part.get_content_type() not in ("text/plain", "text/html") or _is_file(part)):
            leaves.append(part)

    visit(mail)
    return leaves


def _is_file(part: EmailMessage) -> bool:
    return part.get_content_disposition() == "attachment" or bool(part.get_filename())


def _all_headers(mail: EmailMessage, name: str) -> list[str]:
    """Every value of header ``name``, top first, unfolded; unreadable ones are skipped."""
    try:
        values = mail.get_all(name) or []
    except (ValueError, IndexError, TypeError):
        return []
    return [re.sub(r"\r?\n[ \t]+", " ", str(v)) for v in values]


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
