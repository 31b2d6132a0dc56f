"""Owner, boot check and provisioning window: fake-clock units for timing and states, then the live API and CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.api.system_service import attach as system
from server.config import load
from server.engine import FakeClock
from server.gateway import Gateway
from server.statemachine import State
from tests.server.wifi.system_gateway import system_gateway
from tests.support import wait_for

NO_BUS = "unix:path=/nonexistent/ohm-test-bus"  # never the machine's own system bus


def fake_gateway(tmp_path: Path, **overrides: Any) -> Gateway:
    settings = {"data_dir": tmp_path, "stats_interval": 0, "system.dbus_address": NO_BUS, **overrides}
    gw = Gateway(load(None, env={}, overrides=settings), FakeClock(), services=[system])
    gw.start()
    gw.engine.run_pending()
    return gw


def set_owner(tmp_path: Path) -> None:
    from server.settings import SettingsStore

    SettingsStore(tmp_path).set_owner("alice", None, force=False, now=0.0)


def test_first_boot_goes_to_provisioning_with_the_window_open_until_it_times_out(tmp_path: Path) -> None:
    gw = fake_gateway(tmp_path)
    prov = gw.services["provisioning"]
    assert gw.state is State.PROVISIONING
    status = prov.status()
    assert status["window_open"] and status["closes_in_s"] == 300.0 and not status["provisioned"]
    assert "no owner" in status["reason"] and "no network" in status["reason"]
    gw.engine.advance(299)
    assert prov.status()["window_open"] and gw.state is State.PROVISIONING
    gw.engine.advance(2)
    assert not prov.status()["window_open"] and gw.state is State.OFFLINE


def test_owner_and_wired_network_boot_provisioned(tmp_path: Path) -> None:
    set_owner(tmp_path)
    gw = fake_gateway(tmp_path, **{"network.wired": True})
    assert gw.state is State.OFFLINE
    assert gw.services["provisioning"].status() == {
        "window_open": False,
        "closes_in_s": 0.0,
        "provisioned": True,
        "reason": "",
    }


def test_owner_without_any_network_is_not_provisioned(tmp_path: Path) -> None:
    set_owner(tmp_path)
    gw = fake_gateway(tmp_path)  # no NetworkManager reachable: no Wi-Fi connection known
    assert gw.state is State.PROVISIONING
    assert gw.services["provisioning"].reason().startswith("no network configured")


def test_an_explicit_provisioned_callable_still_wins(tmp_path: Path) -> None:
    gw = Gateway(
        load(None, env={}, overrides={"data_dir": tmp_path, "stats_interval": 0, "system.dbus_address": NO_BUS}),
        FakeClock(),
        provisioned=lambda: True,
        services=[system],
    )
    gw.start()
    gw.engine.run_pending()
    assert gw.state is State.OFFLINE


def test_open_extend_and_close_move_the_state(tmp_path: Path) -> None:
    set_owner(tmp_path)
    gw = fake_gateway(tmp_path, **{"network.wired": True})
    prov = gw.services["provisioning"]
    prov.open(10)
    gw.engine.run_pending()
    assert gw.state is State.PROVISIONING
    prov.open(100)  # reopening moves the deadline; the first timer is replaced
    gw.engine.advance(20)
    assert prov.status()["window_open"] and gw.state is State.PROVISIONING
    assert prov.close()["window_open"] is False
    gw.engine.run_pending()
    assert gw.state is State.OFFLINE
    gw.engine.advance(200)  # no stray timer fires later
    assert gw.state is State.OFFLINE


def test_closing_the_window_with_a_connected_uplink_goes_online(tmp_path: Path) -> None:
    gw = fake_gateway(tmp_path)

    class ConnectedUplink:  # what the state machine needs from the uplink: its `connected` flag
        connected = True

    gw.services["uplink"] = ConnectedUplink()
    gw.services["provisioning"].close()
    gw.engine.run_pending()
    assert gw.state is State.ONLINE


@pytest.mark.integration
def test_owner_and_window_over_the_api(tmp_path: Path) -> None:
    with system_gateway(tmp_path / "gw", **{"network.wired": True}) as gw:
        admin, reader = gw.client(gw.admin), gw.client(gw.read)
        wait_for(lambda: gw.gateway.state is State.PROVISIONING)
        got = reader.call("GET", "/api/provisioning").json
        assert got["window_open"] and not got["provisioned"] and got["reason"].startswith("no owner")
        assert reader.call("GET", "/api/owner").json == {"owner": None, "name": None, "initialized_at": None}

        assert reader.call("POST", "/api/owner/initialize", {"owner": "alice"}).status == 403
        for bad, why in [
            ({}, "owner: required"),
            ({"owner": "  "}, "owner: must not be empty"),
            ({"owner": 5}, "owner: must be a JSON string"),
            ({"owner": "a", "extra": 1}, "unknown field 'extra'"),
            ({"owner": "a\x07"}, "control characters"),
        ]:
            got = admin.call("POST", "/api/owner/initialize", bad)
            assert got.status == 422 and why in got.json["detail"], (bad, got.json)
        ok = admin.call("POST", "/api/owner/initialize", {"owner": "alice", "name": "Garage"})
        assert ok.status == 200 and ok.json["owner"] == "alice" and ok.json["name"] == "Garage"
        assert reader.call("GET", "/api/name").json["name"] == "Garage"
        again = admin.call("POST", "/api/owner/initialize", {"owner": "bob"})
        assert again.status == 409 and "force" in again.json["detail"]
        assert admin.call("POST", "/api/owner/initialize", {"owner": "bob", "force": True}).json["owner"] == "bob"
        assert reader.call("GET", "/api/owner").json["owner"] == "bob"
        assert reader.call("GET", "/api/provisioning").json["provisioned"] is True

        assert admin.call("DELETE", "/api/provisioning/window").json["window_open"] is False
        wait_for(lambda: gw.gateway.state is State.OFFLINE)
        for bad in ({"seconds": 0}, {"seconds": 901}, {"seconds": "5"}, {"minutes": 1}):
            assert admin.call("POST", "/api/provisioning/window", bad).status == 422, bad
        assert reader.call("POST", "/api/provisioning/window", {}).status == 403
        opened = admin.call("POST", "/api/provisioning/window", raw=b"")  # no body: the default length
        assert opened.status == 200 and 299 < opened.json["closes_in_s"] <= 300
        short = admin.call("POST", "/api/provisioning/window", {"seconds": 1})
        assert short.json["window_open"] and short.json["closes_in_s"] <= 1
        wait_for(lambda: gw.gateway.state is State.PROVISIONING)
        wait_for(lambda: not reader.call("GET", "/api/provisioning").json["window_open"], 5)
        wait_for(lambda: gw.gateway.state is State.OFFLINE)  # closed by the engine task on time
        admin.close()
        reader.close()


@pytest.mark.integration
def test_cli_opens_and_shows_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    with system_gateway(tmp_path / "gw") as gw:
        monkeypatch.setenv("OHM_API_HOST", "127.0.0.1")
        monkeypatch.setenv("OHM_API_PORT", str(gw.port))
        data = str(tmp_path / "gw")
        gw.gateway.services["provisioning"].close()
        assert main(["provisioning", "open", "--seconds", "120", "--data-dir", data]) == 0
        out = capsys.readouterr().out
        assert "provisioning window open, closes in 120 s" in out and "not provisioned: no owner" in out
        assert gw.gateway.services["provisioning"].status()["window_open"]
        assert main(["provisioning", "close", "--data-dir", data]) == 0
        assert "window closed" in capsys.readouterr().out
        assert main(["provisioning", "open", "--seconds", "0", "--data-dir", data]) == 2
        assert "--seconds must be 1-900" in capsys.readouterr().err
    monkeypatch.setenv("OHM_API_PORT", "1")  # nothing listens there
    assert main(["provisioning", "status", "--data-dir", data]) == 1
    assert "no gateway API at 127.0.0.1:1" in capsys.readouterr().err
