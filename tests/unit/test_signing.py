"""The contract's signature against vectors computed outside Python.

Expected values come from openssl, e.g. for the POST::

    BH=$(printf '%s' "$BODY" | openssl dgst -sha256 -r | cut -d' ' -f1)
    printf 'POST\\n/gw/api/v1/invoices\\n1763601478000\\n0d6c...9c11\\n%s' "$BH" \\
        | openssl dgst -sha256 -hmac 'sandbox-secret'
"""

from __future__ import annotations

from streams.platform.signing import sign, signatures_match, signing_string

SECRET = "sandbox-secret"
TIMESTAMP = "1763601478000"
BODY = b'{"invoice_number":"26112000000000012345","total_with_tax":"1060.00"}'
BODY_SHA256 = "21a03bdcc550d2671d43a0014d5c012353ad64e3986c8c8996594155fe6cd4d6"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
LIST_PATH = (
    "/api/v1/invoices?seller_tax_id=91110108MA01XXXXXB&from=2026-11-01&to=2026-11-30&page_size=2"
)


def test_post_signature_matches_openssl() -> None:
    nonce = "0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11"
    assert signing_string("post", "/gw/api/v1/invoices", TIMESTAMP, nonce, BODY) == (
        f"POST\n/gw/api/v1/invoices\n{TIMESTAMP}\n{nonce}\n{BODY_SHA256}"
    )
    assert (
        sign(SECRET, "POST", "/gw/api/v1/invoices", TIMESTAMP, nonce, BODY)
        == "bb7059d19369e9efacb239b52ec0c1b8b091068e229e680715db3466af8d4d06"
    )


def test_a_digest_the_caller_already_has_signs_as_the_body_it_names() -> None:
    nonce = "0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11"
    given = sign(SECRET, "POST", "/gw/api/v1/invoices", TIMESTAMP, nonce, BODY, BODY_SHA256)
    assert given == "bb7059d19369e9efacb239b52ec0c1b8b091068e229e680715db3466af8d4d06"


def test_get_signs_the_sha256_of_the_empty_body_and_the_query_string() -> None:
    nonce = "5f0e9d1c-2b7a-4c3e-8a61-9d0f7e3b2a10"
    assert signing_string("GET", LIST_PATH, TIMESTAMP, nonce, b"").endswith(f"\n{EMPTY_SHA256}")
    assert (
        sign(SECRET, "GET", LIST_PATH, TIMESTAMP, nonce, b"")
        == "8ed64ec9c2531e0399be9bf5cac2486b70fabb1a7e926e8f78076c7e4f02b556"
    )


def test_any_changed_part_changes_the_signature() -> None:
    nonce = "0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11"
    base = sign(SECRET, "POST", "/api/v1/invoices", TIMESTAMP, nonce, BODY)
    variants = [
        sign("other-secret", "POST", "/api/v1/invoices", TIMESTAMP, nonce, BODY),
        sign(SECRET, "PUT", "/api/v1/invoices", TIMESTAMP, nonce, BODY),
        sign(SECRET, "POST", "/api/v1/invoices?x=1", TIMESTAMP, nonce, BODY),
        sign(SECRET, "POST", "/api/v1/invoices", "1763601478001", nonce, BODY),
        sign(SECRET, "POST", "/api/v1/invoices", TIMESTAMP, nonce + "x", BODY),
        sign(SECRET, "POST", "/api/v1/invoices", TIMESTAMP, nonce, BODY + b" "),
    ]
    assert base not in variants
    assert signatures_match(base, base)
    assert not any(signatures_match(base, v) for v in variants)
