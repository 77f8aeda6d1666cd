"""Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

from notifiers import signing


def test_signature_is_hmac_sha256_of_id_timestamp_body():
    body = b'{"current": "alarm"}'
    header = signing.signature("s3cret", "msg_1", 1700000000, body)
    expected = hmac.new(
        b"s3cret", b"msg_1.1700000000." + body, hashlib.sha256
    ).digest()
    assert header == "v1," + base64.b64encode(expected).decode()
    assert signing.verify("s3cret", "msg_1", 1700000000, body, header)


def test_whsec_secret_is_base64_decoded():
    key = b"\x01\x02\x03secret-bytes"
    secret = "whsec_" + base64.b64encode(key).decode()
    header = signing.signature(secret, "id", 5, b"x")
    expected = hmac.new(key, b"id.5.x", hashlib.sha256).digest()
    assert header == "v1," + base64.b64encode(expected).decode()


def test_tampered_body_or_wrong_secret_fails():
    header = signing.sign(["a"], "id", 1, b"body")
    assert not signing.verify("a", "id", 1, b"bodY", header)
    assert not signing.verify("b", "id", 1, b"body", header)
    assert not signing.verify("a", "id", 2, b"body", header)


def test_several_secrets_give_several_signatures():
    header = signing.sign(signing.split_secrets("old new"), "id", 1, b"b")
    assert len(header.split()) == 2
    assert signing.verify("old", "id", 1, b"b", header)
    assert signing.verify("new", "id", 1, b"b", header)
