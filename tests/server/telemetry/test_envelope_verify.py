import pytest

from server.bus import Point, Quality, Snapshot
from server.crypto.jws import sign_compact
from server.crypto.software import SoftwareSigner
from server.telemetry.envelope import GENESIS, ChainState, build_batch, build_result, record_from_snapshot
from server.telemetry.verify import DUPLICATE, NEW, REJECTED, Ledger, authenticate


@pytest.fixture(scope="module")
def signer():
    return SoftwareSigner.generate()


def rec(i, dev="inv1"):
    return {"d": dev, "t": 1_700_000_000.0 + i, "on": True, "v": {"p": i}}


def chain(signer, sizes, state=None):
    state = state or ChainState()
    tokens = []
    for n in sizes:
        token, state, _ = build_batch(signer, state, [rec(i) for i in range(n)], now=1_700_000_100.0, synced=True)
        tokens.append(token)
    return tokens, state


def test_record_from_snapshot_is_compact_and_keeps_quality():
    snap = Snapshot(
        "inv1",
        1_700_000_000.1234,
        5.0,
        True,
        {"p": Point(12.5, "W"), "e": Point(None, "Wh", Quality.NA)},
        profile="sma",
    )
    r = record_from_snapshot(snap)
    assert r == {
        "d": "inv1",
        "t": 1_700_000_000.123,
        "on": True,
        "v": {"p": 12.5, "e": None},
        "u": {"p": "W", "e": "Wh"},
        "q": {"e": "n/a"},
        "p": "sma",
    }


def test_batch_payload_fields(signer):
    (token,), state = chain(signer, [3])
    _, payload = authenticate(token)
    assert payload["gw"] == signer.device_id
    assert payload["seq"] == [1, 3] and [r["s"] for r in payload["records"]] == [1, 2, 3]
    assert payload["prev"] == GENESIS and payload["synced"] is True
    assert payload["ts"] == [1_700_000_000.0, 1_700_000_002.0]
    assert state.next_seq == 4 and state.prev_hash != GENESIS


# Table: which order of arrival gives which verdicts and gaps.
CASES = [
    ("in order", [0, 1, 2], [NEW, NEW, NEW], []),
    ("duplicate", [0, 1, 1, 2], [NEW, NEW, DUPLICATE, NEW], []),
    ("out of order", [2, 0, 1], [NEW, NEW, NEW], []),
    ("gap", [0, 2], [NEW, NEW], [(3, 4)]),
    ("missing start", [1, 2], [NEW, NEW], [(1, 2)]),
]


@pytest.mark.parametrize("name,order,statuses,gaps", CASES, ids=[c[0] for c in CASES])
def test_ledger_table(signer, name, order, statuses, gaps):
    tokens, _ = chain(signer, [2, 2, 2])
    ledger = Ledger()
    verdicts = [ledger.check(tokens[i]) for i in order]
    assert [v.status for v in verdicts] == statuses
    assert all(not v.problems for v in verdicts)
    assert ledger.gaps(signer.device_id) == gaps


def test_chain_break_detected(signer):
    tokens, state = chain(signer, [2])
    # a second batch that claims the right sequence but names the wrong previous batch
    forged_state = ChainState(state.next_seq, "f" * 64)
    t2, _, _ = build_batch(signer, forged_state, [rec(9)], now=1.0, synced=False)
    ledger = Ledger()
    ledger.check(tokens[0])
    v = ledger.check(t2)
    assert v.status == NEW and "chain broken" in v.problems[0]


def test_equivocation_and_forgery_rejected(signer):
    tokens, _ = chain(signer, [2])
    ledger = Ledger()
    assert ledger.check(tokens[0]).status == NEW
    alt, _, _ = build_batch(signer, ChainState(), [rec(5), rec(6)], now=2.0, synced=True)
    v = ledger.check(alt)
    assert v.status == REJECTED and "overlaps" in v.problems[0]
    # another key claiming this gateway's id: the embedded key does not hash to the id
    impostor = SoftwareSigner.generate()
    header = {"kid": signer.device_id, "typ": "ohm.telemetry", "jwk": impostor.public_jwk()}
    fake = sign_compact(impostor, header, {"gw": signer.device_id, "seq": [3, 3], "prev": GENESIS, "records": []})
    v = ledger.check(fake)
    assert v.status == REJECTED and "does not match" in v.problems[0]
    assert ledger.check("garbage").status == REJECTED


def test_pinned_key_overrides_embedded(signer):
    tokens, _ = chain(signer, [1])
    stranger = SoftwareSigner.generate()
    assert Ledger({signer.device_id: signer.public_key()}).check(tokens[0]).ok
    assert Ledger({signer.device_id: stranger.public_key()}).check(tokens[0]).status == REJECTED
    # with a pin list, unknown gateways are refused
    assert Ledger({"ohm-other": stranger.public_key()}).check(tokens[0]).status == REJECTED


def test_result_is_not_telemetry(signer):
    token = build_result(signer, "c1", ok=True, now=1.0, result={"pong": True})
    assert Ledger().check(token).status == REJECTED
    _, payload = authenticate(token, typ="ohm.cmd.result")
    assert payload["id"] == "c1" and payload["ok"] is True


def test_verify_cli(signer, tmp_path, capsys):
    import argparse

    from server.telemetry.cli import cmd_verify

    tokens, _ = chain(signer, [2, 2, 2])
    f = tmp_path / "t.txt"
    f.write_text("\n".join(tokens) + "\n")
    args = argparse.Namespace(files=[f], key=[], json=False, quiet=False)
    assert cmd_verify(args) == 0
    assert "6 records" in capsys.readouterr().out
    f.write_text("\n".join([tokens[0], tokens[2], "junk"]) + "\n")
    assert cmd_verify(args) == 1
    out = capsys.readouterr().out
    assert "rejected" in out and "(3, 4)" in out


def test_verify_subcommand_is_registered(signer, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    tokens, _ = chain(signer, [1, 1])
    f = tmp_path / "t.txt"
    f.write_text("\n".join(tokens) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "server", "verify", str(f)], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "2 batches, 2 records" in out.stdout
    f.write_text(tokens[1] + "\n")
    assert (
        subprocess.run([sys.executable, "-m", "server", "verify", str(f)], cwd=root, capture_output=True).returncode
        == 1
    )
