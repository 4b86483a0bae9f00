"""Logs and payload copies know the same secret fields: the contracts' (contracts.redaction)."""

from __future__ import annotations

import json

import pytest

from contracts.auth import LinkChild
from contracts.envelope import encode
from contracts.redaction import MASK, mask_payload, secret_field_names
from services.runtime.logs import redact

pytestmark = pytest.mark.unit


def test_log_redaction_masks_every_secret_field_of_the_contracts():
    fields = {name: "K7P2Q9XM-opaque" for name in secret_field_names()}
    assert {"activation_code", "otpauth_uri", "password", "code"} <= set(fields)
    assert redact({"payload": fields}) == {"payload": {name: MASK for name in fields}}


def test_a_payload_copy_masks_the_secrets_of_its_type_and_keeps_the_bytes_otherwise():
    link = LinkChild(request_id="r-1", contract="40012345", activation_code="K7P2Q9XM")
    masked, paths = mask_payload(LinkChild.TYPE, encode(link))
    assert paths == ("activation_code",) and b"K7P2Q9XM" not in (masked or b"")
    assert json.loads(masked or b"") == {**json.loads(encode(link)), "activation_code": MASK}
    by_birth_date = LinkChild(request_id="r-2", contract="40012345", birth_date="2014-03-08")
    assert mask_payload(LinkChild.TYPE, encode(by_birth_date)) == (encode(by_birth_date), ())
    assert mask_payload(LinkChild.TYPE, b"[1, 2") == (b"[1, 2", ())
