"""End to end over bumble's virtual link against a real gateway API on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bumble.core import AdvertisingData

from bluetooth import improv as iv
from bluetooth.central import Central, scan
from bluetooth.gatt import IMPROV_ERROR, IMPROV_RPC, IMPROV_SERVICE, IMPROV_STATE, OHM_INFO
from tests.bluetooth.ble_support import Ble, Server, close_window, start_ble
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_advertises_name_and_improv_service_data(ble: Ble) -> None:
    adv = ble.run(scan(ble.central))
    name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
    assert name == ble.service.name and name.startswith("Ohm-") and len(name) == 8
    authorized = bytes([iv.State.AUTHORIZED, iv.CAPABILITIES, 0, 0, 0, 0])
    assert service_data(adv) == authorized
    # Improv 2.x: service UUID and service data in the same advertisement (cycled with the named one).

    def improv(adv: Any) -> bool:
        uuids = adv.data.get(AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS) or []
        return any(str(u).lower() == IMPROV_SERVICE for u in uuids)

    other = ble.run(scan(ble.central, match=improv))
    assert service_data(other) == authorized
    assert len(ble.service.improv_advert().payload()) == 31


def service_data(adv: Any) -> bytes | None:
    """The payload of service data 4677 in an advertisement."""
    for uuid, data in adv.data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID):
        if str(uuid).upper().endswith("4677"):
            return bytes(data)
    return None


@pytest.mark.parametrize("mtu", [23, 185, 517])
def test_rest_over_ohm_channel_at_mtu(ble: Ble, server: Server, mtu: int) -> None:
    central = ble.connect(mtu)
    assert central.mtu == mtu
    info = json.loads(ble.run(central.read(OHM_INFO)))
    assert info == {"v": 1, "name": ble.service.name, "window": True, "id": ble.service.gateway_id, "mtu": mtu}
    assert len(json.dumps(info, separators=(",", ":"))) < 180
    ble.run(central.handshake(ble.service.pop))
    reply = ble.run(central.rest("GET", "/api/crypto"))
    assert reply["status"] == 200
    assert reply["body"]["id"] == ble.service.gateway_id
    # The server's own errors come back unchanged; paths outside /api/ are refused by the service.
    assert ble.run(central.rest("GET", "/api/no-such-thing"))["status"] == 404
    assert ble.run(central.rest("GET", "/etc/passwd")) == {
        "status": 400,
        "error": "bad_path",
        "detail": "only paths under /api/ are forwarded",
    }
    # A large answer: 23 B MTU carries at most 255 * 17 B, so it is refused clearly; larger MTUs carry it.
    state = ble.run(central.rest("GET", "/api/state"))
    if mtu == 23 and state["status"] == 413:
        assert state["error"] == "response_too_large"
    else:
        assert state["status"] == 200 and "engine" in state["body"]
    ble.run(central.disconnect())


def test_pair_returns_the_admin_token(ble: Ble, server: Server) -> None:
    central = ble.connect()
    ble.run(central.handshake(ble.service.pop))
    assert ble.run(central.call({"op": "pair"})) == {"status": 200, "body": {"admin_token": server.admin}}
    assert ble.run(central.call({"op": "nope"}))["error"] == "unknown_op"


def test_wrong_pop_then_lockout_and_service_keeps_running(ble: Ble) -> None:
    from bluetooth.central import ChannelError

    central = ble.connect()
    for _ in range(5):
        with pytest.raises(ChannelError) as err:
            ble.run(central.handshake("0000000000"))
        assert err.value.reply == {"status": 401, "error": "bad_pop", "detail": "the code does not match the label"}
    with pytest.raises(ChannelError) as err:
        ble.run(central.handshake(ble.service.pop))  # even the right code waits now
    assert err.value.reply["status"] == 429 and err.value.reply["error"] == "locked"
    assert 0 < err.value.reply["retry_in_s"] <= 300
    ble.run(central.disconnect())
    ble.in_engine(lambda now: ble.service.channel.lockout._failures.clear())
    again = ble.connect()
    ble.run(again.handshake(ble.service.pop))
    assert ble.run(again.rest("GET", "/api/crypto"))["status"] == 200


def test_garbage_frames_get_clear_errors(ble: Ble) -> None:
    central = ble.connect(517)

    async def raw(value: bytes) -> dict:
        await central.write(value)
        return (await central.receive())[1]

    assert ble.run(raw(b"\x07"))["error"] == "bad_chunk"  # truncated header
    assert ble.run(raw(bytes([8, 0, 0x80]) + b"{}"))["error"] == "bad_chunk"  # unknown flag bits
    assert ble.run(raw(bytes([9, 3, 1]) + b"{}"))["error"] == "bad_chunk"  # chunk 3 first
    ble.run(central.write(bytes([10, 0, 0]) + b'{"op":'))  # a partial message ...
    assert ble.run(raw(bytes([11, 0, 1]) + b"{}")) == {  # ... and another req mid-message
        "status": 400,
        "error": "bad_chunk",
        "detail": "a chunk of another request mid-message",
    }
    assert ble.run(raw(bytes([12, 0, 1]) + b"\xff\xfe not json"))["error"] == "bad_json"
    assert ble.run(raw(bytes([13, 0, 1]) + b'{"box":"AAAA"}'))["error"] == "no_session"

    async def oversize() -> dict:
        body = bytes(509)
        for idx in range(130):
            await central.write(bytes([14, idx, 0]) + body, with_response=False)
        return (await central.receive())[1]

    assert ble.run(oversize())["status"] == 413
    # Everything still works on the same connection.
    ble.run(central.handshake(ble.service.pop))
    ble.run(central.rest("GET", "/api/crypto"))
    # A sealed box that was tampered with or replayed is refused, the session survives.
    session = central.session
    assert session is not None and session.box is not None
    box = session.box.seal(99, {"method": "GET", "path": "/api/crypto"})
    first = ble.run(raw(bytes([99, 0, 1]) + json.dumps(box).encode()))
    assert "box" in first
    replay = ble.run(raw(bytes([99, 0, 1]) + json.dumps(box).encode()))
    assert replay["error"] == "bad_box"
    assert ble.service.channel.counts["framing_errors"] >= 5


def test_disconnect_mid_request_keeps_service_running(ble: Ble) -> None:
    central = ble.connect(23)
    ble.run(central.write(bytes([1, 0, 0]) + b'{"op":"he'))  # first chunk only
    ble.run(central.disconnect())
    wait_for(lambda: not ble.service.channel.conns)
    central = ble.connect(185)
    ble.run(central.handshake(ble.service.pop))

    async def send_and_leave() -> None:
        assert central.session is not None and central.session.box is not None
        await central.send(central.session.box.seal(50, {"method": "GET", "path": "/api/state"}), req=50)
        await central.disconnect()

    ble.run(send_and_leave())
    wait_for(lambda: not ble.service.channel.conns)
    fresh = ble.connect(185)
    ble.run(fresh.handshake(ble.service.pop))
    assert ble.run(fresh.rest("GET", "/api/crypto"))["status"] == 200


def test_window_closed_refuses_handshake_and_improv_wifi(ble: Ble, server: Server) -> None:
    close_window(ble, server)
    adv = ble.run(scan(ble.central))
    wait_for(lambda: service_data(ble.run(scan(ble.central)))[:1] == bytes([iv.State.AUTHORIZATION_REQUIRED]))
    central = ble.run(Central.connect(ble.central, adv.address, 185, ble.peer_sees(0)))
    reply = ble.run(central.exchange({"op": "hello", "v": 1, "pub": "x"}))
    assert reply["status"] == 403 and reply["error"] == "window_closed"
    assert ble.run(central.read(IMPROV_STATE)) == bytes([iv.State.AUTHORIZATION_REQUIRED])
    data = iv.encode_strings(["Home", "secret"])
    ble.run(central.write(iv.frame(iv.Command.WIFI_SETTINGS, data), IMPROV_RPC))
    wait_for(lambda: ble.service.improv.error == iv.Error.NOT_AUTHORIZED)


def test_improv_over_ble(ble: Ble) -> None:
    central = ble.connect(23)  # Improv frames over 20 bytes arrive in several writes
    info = ble.run(central.improv(iv.Command.DEVICE_INFO))
    assert info[0] == "Ohm gateway" and info[3] == ble.service.name
    assert ble.run(central.improv(iv.Command.HOSTNAME, iv.encode_strings(["ohm-garage"]))) == ["ohm-garage"]
    name = ble.run(central.improv(iv.Command.DEVICE_NAME))  # the server's name (or the BLE name without one)
    assert len(name) == 1 and name[0]
    # A bad checksum and an unknown command set the error characteristic.
    bad = bytearray(iv.frame(iv.Command.DEVICE_INFO, b""))
    bad[-1] ^= 0xFF
    ble.run(central.write(bytes(bad), IMPROV_RPC))
    wait_for(lambda: ble.run(central.read(IMPROV_ERROR)) == bytes([iv.Error.INVALID_RPC]))
    ble.run(central.write(iv.frame(0x42, b""), IMPROV_RPC))
    wait_for(lambda: ble.run(central.read(IMPROV_ERROR)) == bytes([iv.Error.UNKNOWN_RPC]))


def test_gpio_button_opens_the_window(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "gpio"
    pin = root / "gpio17"
    pin.mkdir(parents=True)
    (root / "export").write_text("")
    (pin / "direction").write_text("in")
    (pin / "value").write_text("1\n")  # released (active low)
    service, link, central = start_ble(server.gateway.data_dir, server.url, button_pin=17, gpio_root=root)
    ble = Ble(service, link, central)
    try:
        wait_for(lambda: service.window.state.open)
        close_window(ble, server)
        (pin / "value").write_text("0\n")  # pressed
        wait_for(lambda: service.window.state.open, why=lambda: str(service.window.state))
        assert "button pressed: opening the provisioning window" in service.events
        (pin / "value").write_text("1\n")
        adv = ble.run(scan(central))
        assert adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == service.name
    finally:
        service.stop()


def test_a_hung_server_does_not_pile_up_polls(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import time

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts (the kernel does), never answers
    port = hung.getsockname()[1]
    service, _link, central = start_ble(
        tmp_path / "data", f"http://127.0.0.1:{port}", gateway_id="ohm-test", http_timeout=3.0
    )
    accepted = []
    try:
        hung.settimeout(0.05)
        deadline = time.monotonic() + 1.5  # about 7 poll intervals of 0.2 s
        while time.monotonic() < deadline:
            try:
                accepted.append(hung.accept()[0])
            except TimeoutError:
                pass
        assert len(accepted) == 1, "a new poll started while the last one still waited"
        assert not service.window.state.open  # never known: closed, the safe default
        # BLE keeps answering meanwhile (reads never wait for the server).
        adv = ble_run(service, scan(central))
        assert adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == service.name
    finally:
        service.stop()
        for conn in accepted:
            conn.close()
        hung.close()


def ble_run(service: Any, coro: Any) -> Any:
    return service.aio.run(coro).result(20)
