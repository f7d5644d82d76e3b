"""Mail parsing: quoted-reply stripping (table-driven), HTML bodies, ids, senders, tokens."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from carebridge_email.parse import (
    REPLY_MARKER,
    MailError,
    authenticity,
    automated_reason,
    html_to_text,
    parse_mail,
    read_mail,
    reply_token,
    strip_quoted,
)

DOMAIN = "example.org"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plain answer.", "Plain answer."),
        ("Yes.\n\nOn Mon, 2 Nov 2026 at 10:00, Care <care@example.org> wrote:\n> old\n", "Yes."),
        ("Yes.\nOn Mon, 2 Nov 2026 at 10:00, Care Team\n<care@example.org> wrote:\n> old\n", "Yes."),
        ("Ja.\n\nAm 02.11.2026 um 10:00 schrieb Care <care@example.org>:\n> alt\n", "Ja."),
        ("Oui.\n\nLe lun. 2 nov. 2026 à 10:00, Care <care@example.org> a écrit :\n> ancien\n", "Oui."),
        ("Sí.\n\nEl lun, 2 nov 2026 a las 10:00, Care escribió:\n> viejo\n", "Sí."),
        ("Fine.\n\n-----Original Message-----\nFrom: Care\nSent: Monday\n", "Fine."),
        ("Fine.\n\nFrom: Care <care@example.org>\nSent: Monday, 2 November 2026\nTo: Ann\nSubject: x\n\nold", "Fine."),
        ("Fine.\n________________________________\nFrom: Care\n", "Fine."),
        ("Thanks!\n-- \nAnn Example\nACME Ltd", "Thanks!"),
        ("> you asked\nmy answer\n> second\nsecond answer", "my answer\nsecond answer"),
        ("From: here on I'll write daily.\nBye", "From: here on I'll write daily.\nBye"),
        ("On the other hand, it wrote: nothing useful", "On the other hand, it wrote: nothing useful"),
        ("On Mon, X wrote:\n> only quoted\n", "On Mon, X wrote:\n> only quoted"),
    ],
)
def test_strip_quoted(text: str, expected: str) -> None:
    assert strip_quoted(text) == expected


def test_html_is_reduced_to_text_without_quotes_scripts_or_styles() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>t</title></head><body>"
        "<div>Hello&nbsp;there,<br>the <b>parcel</b> arrived &amp; is fine.</div>"
        "<p>Second paragraph.</p><script>alert(1)</script>"
        '<div class="gmail_quote"><div>On Mon, Care wrote:</div><blockquote>old text</blockquote></div>'
        '<blockquote type="cite">apple quote</blockquote><img src="x.png">'
        "</body></html>"
    )
    assert html_to_text(html) == "Hello there,\nthe parcel arrived & is fine.\n\nSecond paragraph."


def test_html_without_a_closing_head_tag_keeps_its_body() -> None:
    assert html_to_text("<html><head><title>x</title><body><p>Visible text</p></body></html>") == "Visible text"


def build(**headers: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = headers.pop("From", "Ann <ANN@Customer.Test>")
    mail["To"] = "care@example.org"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    return mail


def test_html_only_mail_and_a_made_up_id_that_is_stable() -> None:
    mail = build(Subject="Hi")
    mail.set_content("<p>Hello from <i>HTML</i></p>", subtype="html")
    raw = mail.as_bytes()
    envelope = {"mail_from": "ann@customer.test", "recipients": ["care@example.org"], "domain": DOMAIN}
    first = parse_mail(read_mail(raw), raw, **envelope)  # type: ignore[arg-type]
    again = parse_mail(read_mail(raw), raw, **envelope)  # type: ignore[arg-type]
    assert first.message.text == "Hello from HTML"
    assert first.message.sender == "ann@customer.test" and first.message.sender_name == "Ann"
    assert first.message.external_id == again.message.external_id, "an MTA redelivery is dropped as a duplicate"
    assert first.message.external_id.startswith("mail:")
    assert "message_id" not in first.message.meta, "no made-up id is ever quoted back in In-Reply-To"


def test_multipart_alternative_prefers_plain_and_keeps_language() -> None:
    mail = build(Subject="Frage", Message_ID="<x@c.test>")
    mail.set_content("Wo ist mein Paket?")
    mail.add_alternative("<p>HTML version</p>", subtype="html")
    mail.get_body(preferencelist=("plain",))["Content-Language"] = "de-DE"  # type: ignore[index]
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.text == "Wo ist mein Paket?"
    assert parsed.message.meta["language"] == "de-DE"
    assert parsed.attachment_data == ()


def test_an_empty_body_falls_back_to_the_subject() -> None:
    mail = build(Subject="Call me back please", Message_ID="<e@c.test>")
    mail.set_content("\n")
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.text == "Call me back please"


def test_a_missing_from_header_uses_the_envelope_sender() -> None:
    mail = build(From="undisclosed-recipients:;")
    mail.set_content("hi")
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="Bob@C.test", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.sender == "bob@c.test"


@pytest.mark.parametrize(
    ("recipients", "token"),
    [
        (["reply+c12@example.org"], "c12"),
        (["care@example.org", "Reply+d3@EXAMPLE.org"], "d3"),
        (["reply+c12@other.test"], None),
        (["reply+bad token@example.org"], None),
        (["care+c12@example.org"], None),
    ],
)
def test_reply_token(recipients: list[str], token: str | None) -> None:
    assert reply_token(recipients, DOMAIN) == token


@pytest.mark.parametrize(
    ("headers", "mail_from", "reason"),
    [
        ({}, "ann@customer.test", None),
        ({"Auto_Submitted": "no"}, "ann@customer.test", None),
        ({}, "", "null sender"),
        ({}, "<>", "null sender"),
        ({"Auto_Submitted": "auto-generated"}, "ann@customer.test", "Auto-Submitted"),
        ({"List_Post": "<mailto:l@c.test>"}, "ann@customer.test", "mailing list"),
        ({"Precedence": "junk"}, "ann@customer.test", "Precedence: junk"),
        ({"From": "Care <CARE@example.org>"}, "care@example.org", "our own address"),
    ],
)
def test_automated_reason(headers: dict[str, str], mail_from: str, reason: str | None) -> None:
    mail = build(**headers)
    mail.set_content("x")
    assert automated_reason(read_mail(mail.as_bytes()), mail_from, own_address="care@example.org") == reason


def test_a_mail_that_is_only_a_file_becomes_an_attachment_with_the_subject_as_text() -> None:
    mail = build(Subject="Scan 12", Message_ID="<scan@c.test>")
    mail.set_content(b"%PDF-1.7 scanned", maintype="application", subtype="pdf", filename="scan.pdf")
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.text == "Scan 12" and parsed.message.attachments[0].filename == "scan.pdf"
    assert parsed.attachment_data == ((b"%PDF-1.7 scanned", "application/pdf"),)


# The quote headers of the four common clients in the four languages, as each writes them in plain text.
QUOTE_HEADERS = {
    "gmail en": "On Mon, Nov 2, 2026 at 10:00 AM Care <care@example.org> wrote:",
    "gmail nl": "Op ma 2 nov 2026 om 10:00 schreef Care <care@example.org>:",
    "gmail de": "Am Mo., 2. Nov. 2026 um 10:00 Uhr schrieb Care <care@example.org>:",
    "gmail fr": "Le lun. 2 nov. 2026 à 10:00, Care <care@example.org> a écrit :",
    "apple en": "On 2 Nov 2026, at 10:00, Care <care@example.org> wrote:",
    "apple nl": "Op 2 nov. 2026 om 10:00 heeft Care <care@example.org> het volgende geschreven:",
    "apple de": "Am 02.11.2026 um 10:00 schrieb Care <care@example.org>:",
    "apple fr": "Le 2 nov. 2026 à 10:00, Care <care@example.org> a écrit :",
    "thunderbird en": "On 02/11/2026 10:00, Care wrote:",
    "thunderbird nl": "Op 02-11-2026 om 10:00 schreef Care:",
    "thunderbird de": "Am 02.11.26 um 10:00 schrieb Care:",
    "thunderbird fr": "Le 02/11/2026 à 10:00, Care a écrit :",
    "gmail en wrapped": "On Mon, Nov 2, 2026 at 10:00 AM Care Team of Example Incorporated <\ncare@example.org> wrote:",
    "gmail nl wrapped": "Op ma 2 nov 2026 om 10:00 schreef Care Team of Example Incorporated <\ncare@example.org>:",
    "outlook en": "From: Care <care@example.org>\nSent: Monday, November 2, 2026 10:00 AM\nTo: Ann\nSubject: Parcel",
    "outlook en new": "From: Care <care@example.org>\nDate: Monday, November 2, 2026 at 10:00\nTo: Ann\nSubject: Parcel",
    "outlook nl": "Van: Care <care@example.org>\nVerzonden: maandag 2 november 2026 10:00\nAan: Ann\nOnderwerp: Pakket",
    "outlook de": "Von: Care <care@example.org>\nGesendet: Montag, 2. November 2026 10:00\nAn: Ann\nBetreff: Paket",
    "outlook fr": "De : Care <care@example.org>\nEnvoyé : lundi 2 novembre 2026 10:00\nÀ : Ann\nObjet : Colis",
    "outlook fr nbsp": "De\xa0: Care <care@example.org>\nEnvoyé\xa0: lundi 2 novembre 2026\nÀ\xa0: Ann\nObjet\xa0: Colis",
    "outlook separator nl": "-----Oorspronkelijk bericht-----\nVan: Care",
    "outlook separator de": "-----Ursprüngliche Nachricht-----\nVon: Care",
    "outlook separator fr": "-----Message d'origine-----\nDe : Care",
}


@pytest.mark.parametrize("header", QUOTE_HEADERS.values(), ids=QUOTE_HEADERS.keys())
def test_the_common_quote_headers_are_cut(header: str) -> None:
    text = f"New answer.\n\n{header}\n\nInternal note: do not tell the customer.\n"
    assert strip_quoted(text) == "New answer."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"My answer.\n\n{REPLY_MARKER}\n[#4 Ann] old text", "My answer."),
        # An attribution we do not know (Italian), the marker quoted below it: cut there, attribution too.
        (f"Risposta.\n\nIl giorno lun 2 nov 2026, Care ha scritto:\n> {REPLY_MARKER}\n> note", "Risposta."),
        (
            f"Answer.\nOn Mon, 2 Nov 2026 at 10:00, Care Team\n<care@example.org> wrote:\n\n> {REPLY_MARKER}",
            "Answer.",
        ),
        (f"> {REPLY_MARKER}\n> only a quote", ""),
        ("Ok\n\n##- PLEASE TYPE YOUR REPLY ABOVE THIS LINE -##\nsecret", "Ok"),
    ],
)
def test_everything_below_the_reply_marker_is_cut(text: str, expected: str) -> None:
    assert strip_quoted(text) == expected


def test_inline_images_of_multipart_related_are_attachments() -> None:
    mail = build(Subject="Screenshot", Message_ID="<rel@c.test>")
    mail.set_content("See the screenshot.")
    mail.add_alternative("<p>See the screenshot.<img src='cid:shot'></p>", subtype="html")
    html = mail.get_payload()[1]  # type: ignore[index]
    html.add_related(b"\x89PNG shot", maintype="image", subtype="png", cid="<shot>", filename="shot.png")
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.text == "See the screenshot."
    assert [(a.mime, a.filename) for a in parsed.message.attachments] == [("image/png", "shot.png")]
    assert parsed.attachment_data == ((b"\x89PNG shot", "image/png"),)


def test_the_subject_of_an_answer_to_a_bridge_mail_is_never_the_text() -> None:
    mail = build(Subject="Re: [#4 Ann Example · Email]", Message_ID="<att-only@staff.test>")
    mail.set_content("\n")
    raw = mail.as_bytes()
    parsed = parse_mail(read_mail(raw), raw, mail_from="", recipients=["care@example.org"], domain=DOMAIN)
    assert parsed.message.text == ""


def test_the_same_message_id_from_two_senders_gives_two_ids() -> None:
    ids = set()
    for sender in ("ann@customer.test", "cees@other.test"):
        mail = build(From=sender, Message_ID="<same@id.test>")
        mail.set_content("x")
        raw = mail.as_bytes()
        ids.add(parse_mail(read_mail(raw), raw, mail_from="", recipients=[], domain=DOMAIN).message.external_id)
    assert len(ids) == 2


def test_a_mail_without_any_sender_address_cannot_be_taken_in() -> None:
    mail = build(From="undisclosed-recipients:;")
    mail.set_content("x")
    raw = mail.as_bytes()
    with pytest.raises(MailError, match="no usable sender"):
        parse_mail(read_mail(raw), raw, mail_from="", recipients=[], domain=DOMAIN)


TRUSTED = ("mx.example.org",)


@pytest.mark.parametrize(
    ("results", "sender", "verdict"),
    [
        ([], "ann@customer.test", False),
        (["mx.example.org; dmarc=pass header.from=customer.test"], "ann@customer.test", True),
        (["MX.EXAMPLE.ORG; dmarc=pass header.from=Customer.Test"], "ann@customer.test", True),
        (["mx.example.org; dmarc=pass header.from=customer.test"], "ann@mail.customer.test", False),
        (["mx.example.org; dkim=pass header.d=customer.test"], "ann@mail.customer.test", True),
        (["mx.example.org; dkim=pass header.i=@customer.test"], "ann@customer.test", True),
        (["mx.example.org; dkim=pass header.d=test"], "ann@customer.test", False),
        (["mx.example.org; dkim=fail header.d=customer.test"], "ann@customer.test", False),
        (["mx.example.org; spf=pass smtp.mailfrom=customer.test"], "ann@customer.test", False),
        (["other.example; dmarc=pass header.from=customer.test"], "ann@customer.test", False),
        (["mx.example.org; ;; broken =="], "ann@customer.test", False),
        (
            [
                "mx.example.org; dmarc=fail header.from=customer.test",
                "mx.example.org; dmarc=pass header.from=customer.test",
            ],
            "ann@customer.test",
            False,
        ),
        (["mx.example.org; dmarc=pass header.from=customer.test"], "ann@customer.test, eve@evil.test", False),
    ],
)
def test_authenticity_trusts_only_the_listed_authserv_ids(results: list[str], sender: str, verdict: bool) -> None:
    mail = build(From=sender)
    for value in results:
        mail["Authentication-Results"] = value
    mail.set_content("x")
    parsed = read_mail(mail.as_bytes())
    assert authenticity(parsed, TRUSTED) is verdict
    assert authenticity(parsed, ()) is None, "nothing trusted: no verdict"
