import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from server.crypto import SignerError, open_signer
from server.crypto.jws import JwsError, sign_compact, split, verify_compact
from server.crypto.keys import b64url, b64url_decode, device_id_for, key_from_jwk, load_public_key
from server.crypto.software import KEY_FILE, SoftwareSigner


def test_key_created_once_with_mode_0600_and_stable_id(tmp_path):
    a = open_signer("software", tmp_path)
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    b = open_signer("auto", tmp_path)  # auto keeps an existing software key
    assert a.device_id == b.device_id
    assert a.device_id.startswith("ohm-") and len(a.device_id) == 24
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_first_boots_agree_on_one_key(tmp_path):
    code = textwrap.dedent(f"""
        from server.crypto.software import SoftwareSigner
        print(SoftwareSigner.load_or_create({str(tmp_path)!r}).device_id)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = {p.communicate(timeout=30)[0].strip() for p in procs}
    assert len(ids) == 1


def test_group_readable_key_is_fixed(tmp_path):
    open_signer("software", tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    open_signer("software", tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_corrupt_key_gives_clear_error(tmp_path):
    (tmp_path / KEY_FILE).write_text("garbage")
    os.chmod(tmp_path / KEY_FILE, 0o600)
    with pytest.raises(SignerError, match="not a usable private key"):
        open_signer("software", tmp_path)


def test_atecc_without_library_says_so(tmp_path):
    with pytest.raises(SignerError, match="cryptoauthlib"):
        open_signer("atecc608", tmp_path)
    with pytest.raises(SignerError, match="unknown identity backend"):
        open_signer("tpm", tmp_path)
    # auto falls back to a software key when no chip library is there
    assert open_signer("auto", tmp_path / "fresh").backend == "software"


def test_public_key_exports_round_trip():
    s = SoftwareSigner.generate()
    assert load_public_key(s.public_pem()).public_numbers() == s.public_key().public_numbers()
    jwk = s.public_jwk()
    assert jwk["kid"] == s.device_id and jwk["crv"] == "P-256"
    assert device_id_for(key_from_jwk(jwk)) == s.device_id
    assert load_public_key(json.dumps(jwk)).public_numbers() == s.public_key().public_numbers()
    with pytest.raises(ValueError):
        load_public_key("nope")


def test_es256_compact_jws_verifies_and_detects_tampering():
    s = SoftwareSigner.generate()
    token = sign_compact(s, {"kid": "x"}, {"a": 1})
    header, payload = verify_compact(token, s.public_key())
    assert header["alg"] == "ES256" and payload == {"a": 1}
    assert len(b64url_decode(token.split(".")[2])) == 64  # raw r||s, not DER
    h, _p, sig = token.split(".")
    forged = h + "." + b64url(b'{"a":2}') + "." + sig
    with pytest.raises(JwsError, match="bad signature"):
        verify_compact(forged, s.public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(JwsError):
        verify_compact(token, other)


@pytest.mark.parametrize(
    "token,reason",
    [
        ("a.b", "three"),
        ("!!.e30.AA", "base64url"),
        (b64url(b'{"alg":"none"}') + ".e30.", "unsupported alg"),
        (b64url(b"[]") + ".e30.AA", "JSON objects"),
    ],
)
def test_malformed_tokens_rejected_with_reason(token, reason):
    with pytest.raises(JwsError, match=reason):
        split(token)


def test_signer_has_no_public_sign_method():
    # No signing oracle: the only way to sign is through the envelope builders.
    s = SoftwareSigner.generate()
    assert not [n for n in dir(s) if "sign" in n and not n.startswith("_")]
