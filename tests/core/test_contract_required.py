"""The channel contract names the method a subclass left out instead of passing without it."""

from __future__ import annotations

import re

import pytest

from bridge.testing import ChannelContract


class _Partial(ChannelContract):  # not collected: no Test prefix
    recipients = ("a", "b")


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda c: c.section(None), "section(platform)"),
        (lambda c: c.sent_texts(None, "a"), "sent_texts(platform, recipient)"),
        (lambda c: c.fail_after(None, 1), "fail_after(platform, accepted)"),
    ],
)
def test_a_missing_method_fails_the_test_with_its_name(call: object, named: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=re.escape(f"_Partial must define {named}")):
        call(_Partial())  # type: ignore[operator]
