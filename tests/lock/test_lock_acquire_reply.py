"""The acquire script's reply codes are the ones ``AcquireReply`` names."""

from __future__ import annotations

import re

from interlock.lock._scripts import ACQUIRE, AcquireReply


def test_every_code_the_acquire_script_returns_is_named() -> None:
    returned = {int(code) for code in re.findall(r"return \{(\d+),", ACQUIRE.source)}
    assert returned == {int(reply) for reply in AcquireReply}


def test_the_script_header_names_each_code() -> None:
    header = ACQUIRE.source.split("\n\n", 1)[0]
    for reply in AcquireReply:
        assert re.search(rf"\{{{reply.value}, .*\}}\s+{reply.name}:", header), reply
