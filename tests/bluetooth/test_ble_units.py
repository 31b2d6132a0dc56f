"""Pure logic of the BLE service: chunks, Improv frames, the session, lockout, PoP, window, channel, config."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bluetooth import chunks
from bluetooth import improv as iv
from bluetooth import pop as popcode
from bluetooth.button import SysfsButton
from bluetooth.channel import OhmChannel
from bluetooth.config import load
from bluetooth.forward import Forwarder, Reply
from bluetooth.gatt import IMPROV_ERROR, IMPROV_RESULT, IMPROV_SERVICE, IMPROV_STATE, Advert
from bluetooth.improv_service import ImprovHandler, scan_strings
from bluetooth.lockout import Lockout
from bluetooth.session import CentralSession, GatewaySession, SessionError, b64d, b64e
from bluetooth.window import Window, WindowState
from server.config import ConfigError
from server.engine import Outcome

# ---- chunks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mtu", "payload"), [(23, 17), (185, 179), (517, 509), (600, 509)])
def test_payload_size_follows_mtu_and_512_cap(mtu: int, payload: int) -> None:
    assert chunks.payload_size(mtu) == payload
    for chunk in chunks.split(5, bytes(2000), mtu):
        assert len(chunk) <= min(mtu - 3, 512)


@pytest.mark.parametrize("size", [0, 1, 17, 18, 1000, 4335])
def test_split_and_reassemble_round_trip(size: int) -> None:
    data = os.urandom(size)
    parts = chunks.split(7, data, 23)
    assert [p[1] for p in parts] == list(range(len(parts)))
    assert [p[2] for p in parts] == [0] * (len(parts) - 1) + [chunks.LAST]
    r = chunks.Reassembler()
    outs = [r.feed(p) for p in parts]
    assert all(o.message is None and o.error is None for o in outs[:-1])
    assert outs[-1] == chunks.Assembled(7, message=data)


def test_split_refuses_what_does_not_fit() -> None:
    with pytest.raises(chunks.TooLarge):
        chunks.split(1, bytes(4336), 23)  # 255 chunks of 17 B
    with pytest.raises(chunks.TooLarge):
        chunks.split(1, bytes(chunks.MAX_MESSAGE + 1), 517)


@pytest.mark.parametrize(
    ("feed", "status", "detail"),
    [
        ([b"\x01\x00"], 400, "a chunk needs 3 header bytes"),
        ([b"\x01\x00\x02{}"], 400, "unknown flag bits 0x02"),
        ([b"\x01\x01\x01{}"], 400, "chunk 1 without chunk 0"),
        ([b"\x01\x00\x00{", b"\x01\x02\x01}"], 400, "chunk 2 where 1 was due"),
        ([b"\x01\x00\x00{", b"\x02\x00\x01{}"], 400, "a chunk of another request mid-message"),
    ],
)
def test_reassembler_errors(feed: list[bytes], status: int, detail: str) -> None:
    r = chunks.Reassembler()
    out = [r.feed(c) for c in feed][-1]
    assert (out.status, out.error, out.detail) == (status, "bad_chunk", detail)
    assert r.assembling is None
    assert r.feed(b"\x09\x00\x01{}").message == b"{}"  # fresh start works


def test_reassembler_too_large_then_tail_is_dropped_quietly() -> None:
    r = chunks.Reassembler(max_message=100)
    assert r.feed(b"\x03\x00\x00" + bytes(60)).error is None
    out = r.feed(b"\x03\x01\x00" + bytes(60))
    assert (out.status, out.error) == (413, "too_large")
    assert r.feed(b"\x03\x02\x01" + bytes(10)) == chunks.Assembled(3)  # the rest of req 3: no error flood
    assert r.feed(b"\x04\x00\x01{}").message == b"{}"


# ---- Improv -----------------------------------------------------------------------------------------


def test_improv_frames_and_checksums_match_the_spec_example() -> None:
    data = iv.encode_strings(["MyWirelessAP", "mysecurepassword"])
    frame = iv.frame(iv.Command.WIFI_SETTINGS, data)
    assert frame[:3] == bytes([0x01, 0x1E, 0x0C])  # the spec: 01 1E 0C {MyWirelessAP} 10 {mysecurepassword} CS
    assert frame[-1] == sum(frame[:-1]) & 0xFF
    assert iv.frame(iv.Command.IDENTIFY, b"") == bytes([0x02, 0x00, 0x02])
    assert iv.parse_wifi(data) == ("MyWirelessAP", "mysecurepassword")
    assert iv.service_data(iv.State.AUTHORIZED) == bytes([2, 7, 0, 0, 0, 0])


def test_improv_multi_write_reassembly_and_errors() -> None:
    frame = iv.frame(iv.Command.WIFI_SETTINGS, iv.encode_strings(["Home network", "a long passphrase here"]))
    a = iv.RpcAssembler()
    assert all(a.feed(frame[i : i + 20]) is None for i in range(0, len(frame) - 20, 20))
    rpc = a.feed(frame[len(frame) - (len(frame) % 20 or 20) :])
    assert rpc == iv.Rpc(1, frame[2:-1])
    bad = bytearray(frame)
    bad[-1] ^= 1
    with pytest.raises(iv.FrameError, match="checksum"):
        a.feed(bytes(bad))
    with pytest.raises(iv.FrameError, match="after the frame"):
        a.feed(iv.frame(2, b"") + b"\x00")
    with pytest.raises(iv.FrameError):
        iv.parse_wifi(b"\x05ab")
    with pytest.raises(iv.FrameError):
        iv.parse_wifi(iv.encode_strings(["", "x"]))


def test_fit_result_drops_whole_networks() -> None:
    strings = [s for i in range(40) for s in (f"network-{i}", "-50", "WPA2")]
    frame = iv.fit_result(iv.Command.SCAN_NETWORKS, strings, 258)
    assert len(frame) <= 258
    got = iv.decode_strings(frame[2:-1])
    assert len(got) % 3 == 0 and got == strings[: len(got)]


def test_scan_strings_from_several_shapes() -> None:
    body = {
        "networks": [
            {"ssid": "weak", "signal": 20, "security": "wpa2"},
            {"ssid": "strong", "rssi": -40, "security": ""},
            {"ssid": "", "rssi": -1},
            "junk",
        ]
    }
    assert scan_strings(body) == ["strong", "-40", "NO", "weak", "-90", "WPA2"]
    assert scan_strings(None) == []


def test_hostname_rules() -> None:
    assert iv.valid_hostname("ohm-garage")
    assert not iv.valid_hostname("-x") and not iv.valid_hostname("a b") and not iv.valid_hostname("x" * 64)


# ---- session --------------------------------------------------------------------------------------


def test_handshake_and_sealed_messages_both_ways() -> None:
    central = CentralSession()
    gateway = GatewaySession(central.hello()["pub"], "ABCDE12345")
    confirm = central.confirm(4, gateway.hello_reply(), "ABCDE12345")
    ready = gateway.confirm(4, confirm)
    assert central.box is not None and central.box.open(4, ready["box"]) == {"op": "ready"}
    box = central.box.seal(5, {"method": "GET", "path": "/api/state"})
    assert gateway.box.open(5, box["box"]) == {"method": "GET", "path": "/api/state"}
    with pytest.raises(SessionError, match="replay"):
        gateway.box.open(5, box["box"])
    other = central.box.seal(6, {"x": 1})
    with pytest.raises(SessionError, match="does not open"):
        gateway.box.open(7, other["box"])  # AAD is the req byte
    raw = b64d(other["box"])
    assert raw[0] == 0x00 and int.from_bytes(raw[1:12], "big") == 2  # direction 0, counter after confirm(0), 1
    reply = gateway.box.seal(6, {"status": 200})
    assert b64d(reply["box"])[0] == 0x01
    assert central.box.open(6, reply["box"]) == {"status": 200}


def test_wrong_pop_fails_confirm_and_bad_points_are_refused() -> None:
    central = CentralSession()
    gateway = GatewaySession(central.hello()["pub"], "ABCDE12345")
    confirm = central.confirm(1, gateway.hello_reply(), "ABCDE12346")
    with pytest.raises(SessionError):
        gateway.confirm(1, confirm)
    assert not gateway.ready
    for pub in ("", "not base64!", b64e(b"\x04" + bytes(64)), b64e(bytes(65)), 5):
        with pytest.raises(SessionError):
            GatewaySession(pub, "ABCDE12345")


# ---- lockout, PoP ---------------------------------------------------------------------------------


def test_lockout_after_five_failures_in_five_minutes() -> None:
    lock = Lockout()
    for t in range(4):
        lock.failed(t * 10.0)
    assert lock.retry_in(40.0) == 0
    lock.failed(40.0)
    assert lock.retry_in(41.0) == 259  # the first failure (t=0) leaves the window at t=300
    assert lock.retry_in(300.0) == 0


def test_pop_file_is_private_and_stable(tmp_path: Path) -> None:
    code, created = popcode.load_or_create(tmp_path)
    assert created and popcode.is_valid(code)
    assert stat.S_IMODE(os.stat(tmp_path / popcode.POP_FILE).st_mode) == 0o600
    os.chmod(tmp_path / popcode.POP_FILE, 0o644)
    assert popcode.load_or_create(tmp_path) == (code, False)
    assert stat.S_IMODE(os.stat(tmp_path / popcode.POP_FILE).st_mode) == 0o600
    assert popcode.normalize(" abcde-fghjk ") == "ABCDEFGHJK"
    assert popcode.normalize("o1il0") == "01110"
    assert popcode.label("ABCDEFGHJK") == "ABCDE-FGHJK"
    (tmp_path / popcode.POP_FILE).write_text("short")
    with pytest.raises(ValueError, match="damaged"):
        popcode.load_or_create(tmp_path)


# ---- window, advert, button, config ---------------------------------------------------------------


def test_window_reports_a_server_problem_once(caplog: pytest.LogCaptureFixture) -> None:
    w = Window()
    for t in range(3):
        w.from_server(401, {"error": "unauthorized"}, float(t))
    assert caplog.text.count("HTTP 401") == 1 and not w.state.open
    w.from_server(200, {"window_open": True}, 4.0)
    w.from_server(401, None, 5.0)
    assert caplog.text.count("HTTP 401") == 2 and w.state.open  # a known state is kept through a hiccup


def test_window_from_server_and_local_fallback() -> None:
    changes: list[WindowState] = []
    w = Window(local_seconds=300, on_change=changes.append)
    w.from_server(200, {"window_open": True, "closes_in_s": 120, "provisioned": False}, 0.0)
    assert w.state.open and w.mode == "server" and len(changes) == 1
    w.from_server(200, {"window_open": True, "closes_in_s": 118, "provisioned": False}, 2.0)
    assert len(changes) == 1  # only real changes are reported
    w.from_server(404, None, 10.0)
    assert w.mode == "local" and w.state.open
    w.tick(309.9)
    assert w.state.open
    w.tick(310.0)
    assert not w.state.open and changes[-1].source == "local"
    w.open_local(400.0)
    assert w.state.open


def test_advert_fits_31_bytes() -> None:
    improv_uuid = IMPROV_SERVICE
    advert = Advert("Ohm-1A2B", {0x4677: iv.service_data(iv.State.AUTHORIZED)}, (improv_uuid,))
    assert len(advert.payload()) == 23
    assert len(advert.scan_response()) == 18
    improv = Advert("", {0x4677: iv.service_data(iv.State.AUTHORIZED)}, uuids=(improv_uuid,)).payload()
    assert (
        len(improv) == 31
        and improv[3:5] == bytes([17, 0x07])
        and improv[5:21] == bytes.fromhex(improv_uuid.replace("-", ""))[::-1]
    )
    with pytest.raises(ValueError, match="31"):
        Advert("Ohm-" + "x" * 20, {0x4677: bytes(6)}).payload()


def test_sysfs_button_edges(tmp_path: Path) -> None:
    root = tmp_path / "gpio"
    root.mkdir()
    (root / "export").write_text("")
    button = SysfsButton(17, root)
    assert not button.poll()  # not exported yet: it exports, the fake tree has no pin dir
    assert (root / "export").read_text() == "17"
    pin = root / "gpio17"
    pin.mkdir()
    (pin / "direction").write_text("out")
    (pin / "value").write_text("1\n")
    assert not button.poll()
    assert (pin / "direction").read_text() == "in"
    (pin / "value").write_text("0\n")
    assert button.poll()  # pressed (active low)
    assert not button.poll()  # held: one press
    (pin / "value").write_text("1\n")
    assert not button.poll()
    (pin / "value").write_text("0\n")
    assert button.poll()


def test_sysfs_button_finds_the_soc_chip_base(tmp_path: Path) -> None:
    for name, label, base in (("gpiochip0", "raspberrypi-exp-gpio", 0), ("gpiochip512", "pinctrl-bcm2711", 512)):
        chip = tmp_path / name
        chip.mkdir()
        (chip / "label").write_text(label + "\n")
        (chip / "base").write_text(f"{base}\n")
    button = SysfsButton(17, tmp_path)
    assert button.number == 529 and button.value_file == tmp_path / "gpio529" / "value"
    assert SysfsButton(17, tmp_path / "none").number == 17  # an older kernel: the pin number itself


def test_config_defaults_env_and_errors(tmp_path: Path) -> None:
    s = load(env={})
    assert s.server_url == "http://127.0.0.1:8080" and s.button_pin == -1 and s.backend == "auto"
    s = load(env={"OHM_SERVER_URL": "http://127.0.0.1:9", "OHM_BLE_BUTTON_PIN": "17"})
    assert s.server_url == "http://127.0.0.1:9" and s.button_pin == 17
    with pytest.raises(ConfigError) as err:
        load(env={"OHM_BLE_BACKEND": "bluez", "OHM_BLE_POLL_INTERVAL": "fast"}, nope=1)
    assert len(err.value.problems) == 3
    with pytest.raises(ValueError, match="server URL"):
        Forwarder("ftp://x", tmp_path)


# ---- channel and Improv handler with a fake worker ---------------------------------------------------


class Harness:
    """Runs the channel's offloaded work when told to, and decodes what it sends."""

    def __init__(self, window_open: bool = True) -> None:
        self.jobs: list[tuple[Any, Any]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.window = WindowState(open=window_open)

    def offload(self, fn: Any, then: Any) -> None:
        self.jobs.append((fn, then))

    def run_jobs(self) -> None:
        while self.jobs:
            fn, then = self.jobs.pop(0)
            try:
                then(Outcome(value=fn()))
            except Exception as exc:  # noqa: BLE001
                then(Outcome(error=exc))

    def messages(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        r = chunks.Reassembler()
        for _, chunk in self.sent:
            got = r.feed(chunk)
            if got.message is not None:
                out.append((got.req, json.loads(got.message)))
        self.sent.clear()
        return out


class FakeForwarder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answer = Reply(200, {"ok": True})

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        self.calls.append((method, path, body))
        return self.answer

    def admin_token(self) -> str:
        return "admintoken"


def make_channel(h: Harness, fwd: FakeForwarder) -> OhmChannel:
    return OhmChannel(
        pop="ABCDE12345",
        forwarder=fwd,  # type: ignore[arg-type]
        offload=h.offload,
        send=lambda conn, cs: h.sent.extend((conn, c) for c in cs),
        mtu=lambda conn: 185,
        window=lambda: h.window,
        info=lambda: {"v": 1},
    )


def feed(ch: OhmChannel, conn: str, req: int, obj: dict[str, Any]) -> None:
    for c in chunks.split(req, json.dumps(obj).encode(), 185):
        ch.on_chunk(conn, c, 0.0)


def test_channel_one_request_in_flight_and_wifi_ops() -> None:
    h, fwd = Harness(), FakeForwarder()
    ch = make_channel(h, fwd)
    ch.connect("c")
    central = CentralSession()
    feed(ch, "c", 1, central.hello())
    [(_, hello)] = h.messages()
    feed(ch, "c", 2, central.confirm(2, hello, "ABCDE12345"))
    [(_, ready)] = h.messages()
    assert central.box is not None and central.box.open(2, ready["box"]) == {"op": "ready"}
    feed(ch, "c", 3, central.box.seal(3, {"op": "wifi_connect", "ssid": "Home", "password": "pw"}))
    feed(ch, "c", 4, central.box.seal(4, {"op": "wifi_scan"}))
    [(req, busy)] = h.messages()
    assert (req, busy["status"], busy["error"]) == (4, 409, "busy")
    h.run_jobs()
    [(req, answer)] = h.messages()
    assert req == 3 and central.box.open(3, answer["box"]) == {"status": 200, "body": {"ok": True}}
    assert fwd.calls == [("POST", "/api/wifi/connect", {"ssid": "Home", "password": "pw"})]
    feed(ch, "c", 5, central.box.seal(5, {"op": "wifi_connect", "ssid": ""}))
    [(_, bad)] = h.messages()
    assert central.box.open(5, bad["box"])["error"] == "bad_request"
    # A reply that arrives after the central left is dropped.
    feed(ch, "c", 6, central.box.seal(6, {"op": "wifi_scan"}))
    ch.disconnect("c")
    h.run_jobs()
    assert h.messages() == []


def improv_handler(h: Harness, fwd: FakeForwarder, notes: list[tuple[str | None, str, bytes]]) -> ImprovHandler:
    return ImprovHandler(
        forwarder=fwd,  # type: ignore[arg-type]
        offload=h.offload,
        notify=lambda conn, char, value: notes.append((conn, char, value)),
        mtu=lambda conn: 517,
        window=lambda: h.window,
        dashboard_url=lambda reply: "http://192.0.2.1:8080/" if reply else "",
        device_name=lambda: "Ohm-1A2B",
    )


def test_improv_wifi_success_failure_and_authorization() -> None:
    h, fwd = Harness(), FakeForwarder()
    notes: list[tuple[str | None, str, bytes]] = []
    imp = improv_handler(h, fwd, notes)
    assert imp.read(IMPROV_STATE) == bytes([iv.State.AUTHORIZED])
    imp.on_write("c", iv.frame(iv.Command.WIFI_SETTINGS, iv.encode_strings(["Home", "secret"])))
    assert imp.state == iv.State.PROVISIONING
    h.run_jobs()
    assert fwd.calls == [("POST", "/api/wifi/connect", {"ssid": "Home", "password": "secret"})]
    assert imp.state == iv.State.PROVISIONED
    results = [v for conn, char, v in notes if char == IMPROV_RESULT]
    assert iv.decode_strings(results[-1][2:-1]) == ["http://192.0.2.1:8080/"]
    imp.window_changed(WindowState(open=True, provisioned=True))  # the server now says provisioned: no reset
    assert imp.state == iv.State.PROVISIONED
    imp.window_changed(WindowState(open=False))
    imp.window_changed(WindowState(open=True))  # a new window: a new round
    # A failed join: error 3, back to authorized.
    fwd.answer = Reply(502, {"error": "no network"})
    imp.on_write("c", iv.frame(iv.Command.WIFI_SETTINGS, iv.encode_strings(["Home", "wrong"])))
    h.run_jobs()
    assert imp.error == iv.Error.UNABLE_TO_CONNECT and imp.state == iv.State.AUTHORIZED
    # Window closed: not authorized, but identify and device info still work (spec).
    h.window = WindowState(open=False)
    imp.on_write("c", iv.frame(iv.Command.WIFI_SETTINGS, iv.encode_strings(["Home", "pw"])))
    assert imp.error == iv.Error.NOT_AUTHORIZED and imp.read(IMPROV_ERROR) == bytes([4])
    imp.on_write("c", iv.frame(iv.Command.IDENTIFY, b""))
    assert imp.error == iv.Error.NONE
    imp.on_write("c", iv.frame(iv.Command.HOSTNAME, b""))
    assert imp.error == iv.Error.NONE
    imp.on_write("c", iv.frame(iv.Command.HOSTNAME, iv.encode_strings(["x"])))
    assert imp.error == iv.Error.NOT_AUTHORIZED


def test_improv_scan_and_bad_hostname() -> None:
    h, fwd = Harness(), FakeForwarder()
    notes: list[tuple[str | None, str, bytes]] = []
    imp = improv_handler(h, fwd, notes)
    fwd.answer = Reply(200, {"networks": [{"ssid": "Home", "rssi": -50, "security": "WPA2"}]})
    imp.on_write("c", iv.frame(iv.Command.SCAN_NETWORKS, b""))
    h.run_jobs()
    assert iv.decode_strings(imp.read(IMPROV_RESULT)[2:-1]) == ["Home", "-50", "WPA2"]
    imp.on_write("c", iv.frame(iv.Command.HOSTNAME, iv.encode_strings(["bad name!"])))
    assert imp.error == iv.Error.BAD_HOSTNAME


def test_auto_backend_follows_the_system_bus_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Containers mount the host bus elsewhere and say so in DBUS_SYSTEM_BUS_ADDRESS.
    from bluetooth.backends import _system_bus_present

    sock = tmp_path / "system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={sock}")
    present_by_default = Path("/run/dbus/system_bus_socket").exists()
    assert _system_bus_present() is present_by_default
    sock.write_bytes(b"")
    assert _system_bus_present() is True
