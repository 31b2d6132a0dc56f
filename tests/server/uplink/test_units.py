"""Pure parts of the uplink: backoff, command checks, settings problems."""

import json
import random

import pytest

from server.crypto.jws import sign_compact
from server.crypto.software import SoftwareSigner
from server.uplink.backoff import backoff_delay
from server.uplink.client import MqttSettings
from server.uplink.commands import CommandRequest, Rejected, parse_command, register_command

BACKEND = SoftwareSigner.generate()
GW = "ohm-aaaaaaaaaaaaaaaaaaaa"
NOW = 1_700_000_000.0


@pytest.mark.parametrize("attempt,low,high", [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (5, 4.0, 8.0), (9, 5, 10)])
def test_backoff_is_jittered_and_capped(attempt, low, high):
    rng = random.Random(1)
    values = [backoff_delay(attempt, base=0.5, cap=10.0, rng=rng) for _ in range(200)]
    assert low <= min(values) and max(values) <= high
    assert len(set(values)) > 100  # jitter, not a fixed delay


def _cmd(**over):
    body = {"id": "c1", "cmd": "ping", "exp": NOW + 60, "gw": GW, **over}
    return sign_compact(BACKEND, {"typ": "ohm.cmd"}, body).encode()


CASES = [
    ("ok", _cmd(), None),
    ("expired", _cmd(exp=NOW - 1), "expired"),
    ("too far", _cmd(exp=NOW + 7200), "expiry too far ahead"),
    ("wrong gateway", _cmd(gw="ohm-x"), "wrong gateway"),
    ("bad id", _cmd(id="a b"), "malformed: id"),
    ("no exp", _cmd(exp=None), "malformed: exp"),
    ("bool exp", _cmd(exp=True), "malformed: exp"),
    ("args not object", _cmd(args=[1]), "malformed: args"),
    ("bad name", _cmd(cmd="Rm -rf"), "malformed: cmd"),
    ("forged", sign_compact(SoftwareSigner.generate(), {}, {"id": "c1"}).encode(), "bad signature"),
    ("unsigned", json.dumps({"id": "c9"}).encode(), "unsigned"),
    ("not json", b"{oops", "malformed: not JSON"),
    ("binary", b"\xff\xfe", "malformed: not UTF-8"),
    ("huge", b"x" * 70_000, "malformed: too large"),
    ("two parts", b"a.b", "malformed: not a compact JWS"),
]


@pytest.mark.parametrize("name,raw,reason", CASES, ids=[c[0] for c in CASES])
def test_parse_command_table(name, raw, reason):
    if reason is None:
        cmd = parse_command(raw, backend_key=BACKEND.public_key(), gateway_id=GW, now=NOW)
        assert (cmd.id, cmd.name, cmd.args) == ("c1", "ping", {})
        return
    with pytest.raises(Rejected) as info:
        parse_command(raw, backend_key=BACKEND.public_key(), gateway_id=GW, now=NOW)
    assert info.value.reason.startswith(reason)


def test_no_backend_key_refuses_everything():
    with pytest.raises(Rejected, match="no backend key") as info:
        parse_command(_cmd(), backend_key=None, gateway_id=GW, now=NOW)
    assert info.value.cmd_id == "c1"


def test_registry_refuses_duplicates_and_request_finishes_once():
    register_command("test.echo", lambda req: req.args)
    with pytest.raises(ValueError):
        register_command("test.echo", lambda req: None)
    register_command("test.echo", lambda req: None, replace=True)
    done = []
    req = CommandRequest("c", "test.echo", {}, None, lambda ok, res, why: done.append((ok, res, why)))
    req.reply({"a": 1})
    req.fail("late")
    assert done == [(True, {"a": 1}, None)]


def test_settings_problems():
    assert MqttSettings("h", cert_file="c").problems()
    assert MqttSettings("h", password="p").problems()
    assert not MqttSettings("h", tls=True, cert_file="c", key_file="k").problems()
    assert MqttSettings("h", tls=True).effective_port == 8883


def test_connect_before_boot_event_still_reaches_online(tmp_path):
    # The CONNACK can beat the gateway's boot event into the engine queue; UPLINK_UP must not get lost.
    from server.config import load
    from server.engine import FakeClock
    from server.gateway import Gateway
    from server.outbox.service import Outbox
    from server.outbox.store import OutboxStore
    from server.statemachine import Event, State
    from server.uplink.client import Uplink

    gw = Gateway(load(None, env={}, overrides={"data_dir": tmp_path, "stats_interval": 0}), FakeClock())
    outbox = Outbox(gw.engine, gw.bus, OutboxStore(tmp_path / "o.sqlite"))
    up = Uplink(gw.engine, SoftwareSigner.generate(), outbox, MqttSettings("127.0.0.1"), gateway=gw)
    up.client = up._make_client()  # never connected: publish/subscribe just queue
    follow = up._connected(gw.engine.clock.monotonic())
    assert gw.state is State.BOOTING and follow is not None
    gw.apply(Event.BOOTED_PROVISIONED)
    gw.engine.submit(follow)
    gw.engine.advance(0.1)
    assert gw.state is State.ONLINE
    outbox.close()
