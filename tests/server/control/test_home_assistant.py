"""Home Assistant discovery on a real mosquitto: config messages against HA's documented schema, states, commands."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from modbus_slave.server import Simulator
from server.audit import attach as audit
from server.config import load
from server.control import attach as control
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.devices.profile import load_profile
from server.gateway import Gateway
from server.ha import attach as ha
from server.ha.discovery import Topics, control_configs, parse_command, sensor_configs
from tests.support import wait_for

from .conftest import FAST_RETRY, add_device, limit_w

POINT = "control.power_limit_w"

# From HA's sensor docs: the units each device class accepts (the subset our canonical units map to).
HA_UNITS = {
    "power": {"W", "kW", "MW", "mW", "GW", "TW", "BTU/h"},
    "energy": {"Wh", "kWh", "MWh", "mWh", "GWh", "TWh", "J", "kJ", "MJ", "GJ", "cal", "kcal", "Mcal", "Gcal"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "current": {"A", "mA"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "temperature": {"°C", "°F", "K"},
    "battery": {"%"},
    "apparent_power": {"VA", "kVA"},
    "reactive_power": {"var", "kvar"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
TOPIC = re.compile(r"^homeassistant/(sensor|number|switch)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")


def check_entity(topic: str, payload: dict[str, Any]) -> str:
    """Assert one discovery message follows HA's schema; returns its component."""
    match = TOPIC.match(topic)
    assert match, topic
    component = match.group(1)
    assert isinstance(payload["name"], str) and payload["name"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", payload["unique_id"])
    dev = payload["device"]
    assert isinstance(dev["identifiers"], list) and dev["identifiers"] and dev["name"] and dev["manufacturer"]
    assert all(set(a) == {"topic"} for a in payload["availability"]) and payload["availability_mode"] == "all"
    if component == "sensor":
        assert payload["state_topic"] and "{{ value_json[" in payload["value_template"]
        assert payload["state_class"] in STATE_CLASSES
        if "device_class" in payload:
            assert payload["unit_of_measurement"] in HA_UNITS[payload["device_class"]], payload
            if payload["device_class"] == "energy":
                assert payload["state_class"] in ("total", "total_increasing")
    elif component == "number":
        assert payload["command_topic"] and payload["min"] < payload["max"] and payload["step"] > 0
        assert payload["mode"] in ("auto", "box", "slider")
        if "device_class" in payload:
            assert payload["unit_of_measurement"] in HA_UNITS[payload["device_class"]]
    else:
        assert payload["command_topic"] and {payload["payload_on"], payload["payload_off"]} == {"ON", "OFF"}
    return component


def test_discovery_messages_of_every_profile_follow_the_schema() -> None:
    topics = Topics("ohm-1234abcd")
    seen: set[str] = set()
    for key in ("sma", "growatt", "sungrow", "eastron_sdm630", "deye", "huawei_sun2000"):
        profile = load_profile(key)
        for topic, payload in sensor_configs(topics, key, profile) + control_configs(topics, key, profile):
            check_entity(topic, payload)
            assert payload["unique_id"] not in seen
            seen.add(payload["unique_id"])
    growatt = load_profile("growatt")
    kinds = {t.split("/")[1] for t, _ in control_configs(topics, "g", growatt)}
    assert kinds == {"switch", "number"}  # inverter on/off is a switch, the power limit a number
    on_off = next(w for w in growatt.writable if w.name == "control.inverter_on")
    assert parse_command(on_off, b"ON") == 1.0 and parse_command(on_off, b"OFF") == 0.0
    with pytest.raises(ValueError, match="expected ON or OFF"):
        parse_command(on_off, b"maybe")


def test_meters_appear_as_sensors_with_their_derived_points_and_nothing_to_set() -> None:
    from server.devices.meters import load_any_profile

    topics = Topics("ohm-1234abcd")
    for key in ("dsmr", "homewizard_p1", "envoy"):
        profile = load_any_profile(key)
        assert control_configs(topics, key, profile) == []
        configs = sensor_configs(topics, key, profile)
        for topic, payload in configs:
            check_entity(topic, payload)
        named = {payload["value_template"] for _, payload in configs}
        assert len(configs) == len(profile.points) + len(profile.derived) == len(named)
        for derived in profile.derived:
            assert any(derived.name in template for template in named)


class Listener:
    """A paho client playing Home Assistant: collects retained configs and states."""

    def __init__(self, port: int) -> None:
        self.messages: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="home-assistant")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("homeassistant/#", 1), ("ohm-local/#", 1)])
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages[msg.topic] = msg.payload

    def get(self, prefix: str) -> dict[str, bytes]:
        """Messages whose topic starts with `prefix`."""
        with self.lock:
            return {t: p for t, p in self.messages.items() if t.startswith(prefix)}

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def ha_gateway(mosquitto: Any, tmp_path: Path, sim: Simulator) -> Iterator[tuple[Gateway, Listener]]:
    overrides = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "identity.backend": "software",
        "ha.enabled": True,
        "ha.port": mosquitto.port,
    }
    gw = Gateway(load(None, env={}, overrides=overrides), services=[audit, devices, identity, control, ha])
    listener: Listener | None = None
    try:
        gw.start()
        gw.services["control"].retry_gap = FAST_RETRY
        gw.engine.start_thread()
        listener = Listener(mosquitto.port)
        wait_for(gw.services["ha"].connected.is_set, 5)
        add_device(gw, sim, interval=1)
        yield gw, listener
    finally:
        if listener is not None:
            listener.close()
        gw.stop()
        gw.engine.wait_stopped(5)


@pytest.mark.integration
def test_discovery_states_and_commands_over_mosquitto(ha_gateway: tuple[Gateway, Listener], sim: Simulator) -> None:
    gw, ha_client = ha_gateway
    profile = load_profile("sma")
    expected = len(profile.points) + len(profile.writable)
    configs = wait_for(lambda: len(ha_client.get("homeassistant/")) == expected and ha_client.get("homeassistant/"))
    components = [check_entity(t, json.loads(p)) for t, p in configs.items()]
    assert components.count("number") == 1 and components.count("sensor") == len(profile.points)
    node = gw.services["ha"].topics.node
    number = json.loads(configs[f"homeassistant/number/{node}/inv_control_power_limit_w/config"])
    assert number["unit_of_measurement"] == "W" and number["max"] == 100000.0

    base = gw.services["ha"].topics.base
    assert wait_for(lambda: ha_client.get(f"{base}/status")) == {f"{base}/status": b"online"}
    state = wait_for(lambda: ha_client.get(f"{base}/inv/state"))
    assert json.loads(state[f"{base}/inv/state"])["pv.power_w"] > 0
    assert ha_client.get(f"{base}/inv/availability")[f"{base}/inv/availability"] == b"online"

    ha_client.client.publish(number["command_topic"], "2500", qos=1).wait_for_publish(2)
    wait_for(lambda: limit_w(sim) == 2500)
    point_state = f"{base}/inv/control_power_limit_w/state"
    assert wait_for(lambda: ha_client.get(point_state)) == {point_state: b"2500"}
    entry = wait_for(lambda: [e for e in gw.services["audit"].recent(10) if e["who"] == "homeassistant"])[0]
    assert entry["result"] == "ok" and entry["detail"]["value"] == 2500

    # A timed hold set elsewhere (the admin) shows in HA too, and so does its revert.
    held = gw.services["control"].submit(
        {"device": "inv", "point": POINT, "value": 900, "duration_s": 1}, "admin", "local"
    )
    wait_for(lambda: ha_client.get(point_state) == {point_state: b"900"})
    wait_for(lambda: gw.services["control"].get(held.id).state == "reverted")
    assert wait_for(lambda: ha_client.get(point_state) == {point_state: b"2500"})

    ha_client.client.publish(number["command_topic"], "lots", qos=1).wait_for_publish(2)
    refused = wait_for(lambda: [e for e in gw.services["audit"].recent(10) if e["result"].startswith("refused")])
    assert "expected a number" in refused[0]["result"] and limit_w(sim) == 2500

    gw.services["devices"].remove("inv")  # its entities are removed from HA (empty retained configs)
    wait_for(lambda: not any(ha_client.get("homeassistant/").values()))
