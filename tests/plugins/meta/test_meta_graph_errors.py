"""``GraphError.from_response``: the Graph error envelope reduced to what decisions need."""

from __future__ import annotations

from typing import Any

import pytest

from carebridge_meta import GraphError


def test_a_messenger_envelope_keeps_code_subcode_and_message() -> None:
    body = {
        "error": {
            "message": "(#10) This message is sent outside of allowed window.",
            "type": "OAuthException",
            "code": 10,
            "error_subcode": 2018278,
            "fbtrace_id": "AbCdEf123",
        }
    }
    assert GraphError.from_response(400, body) == GraphError(
        status=400, code=10, subcode=2018278, message="(#10) This message is sent outside of allowed window."
    )


def test_a_whatsapp_envelope_keeps_its_error_data_details() -> None:
    body = {
        "error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": "131047",
            "error_data": {"messaging_product": "whatsapp", "details": "More than 24 hours have passed"},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    error = GraphError.from_response(400, body)
    assert (error.code, error.subcode) == (131047, None), "a code sent as a string still reads as a number"
    assert error.details == "More than 24 hours have passed"


def test_the_user_message_stands_in_for_a_missing_message() -> None:
    body = {"error": {"code": 551, "error_user_msg": "This person isn't available right now."}}
    assert GraphError.from_response(400, body).message == "This person isn't available right now."
    assert GraphError.from_response(400, {"error": {"code": 551}}).message == "HTTP 400"


@pytest.mark.parametrize(
    "body",
    [None, "<html>Bad Gateway</html>", [1, 2], {}, {"error": "oops"}, {"message": "no envelope"}],
)
def test_anything_else_keeps_only_the_http_status(body: Any) -> None:
    assert GraphError.from_response(502, body) == GraphError(status=502, code=None, subcode=None, message="HTTP 502")


def test_codes_that_are_not_numbers_read_as_none() -> None:
    error = GraphError.from_response(500, {"error": {"message": "odd", "code": "abc", "error_subcode": [1]}})
    assert (error.code, error.subcode, error.message, error.details) == (None, None, "odd", None)
