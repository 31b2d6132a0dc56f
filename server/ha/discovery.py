"""Home Assistant MQTT discovery messages and topics (pure).

Per HA's MQTT discovery docs: config on `<prefix>/<component>/<node_id>/<object_id>/config` (retained),
ids limited to [a-zA-Z0-9_-]; every entity has a `unique_id` and a `device` block (identifiers
list, name, manufacturer, model) so HA groups it; sensors get `device_class`, `state_class` and
`unit_of_measurement` from HA's sensor table; a `number` needs `command_topic` (with min/max/step),
a `switch` needs `command_topic` (payload_on/payload_off).
"""

from __future__ import annotations

import json
import re
from typing import Any

from server.devices.profile import Profile, WritableSpec

# canonical unit -> (HA unit, device_class, state_class); HA writes degrees Celsius as "°C".
SENSOR_UNITS: dict[str, tuple[str | None, str | None, str]] = {
    "W": ("W", "power", "measurement"),
    "Wh": ("Wh", "energy", "total_increasing"),
    "V": ("V", "voltage", "measurement"),
    "A": ("A", "current", "measurement"),
    "Hz": ("Hz", "frequency", "measurement"),
    "degC": ("°C", "temperature", "measurement"),
    "VA": ("VA", "apparent_power", "measurement"),
    "var": ("var", "reactive_power", "measurement"),
    "%": ("%", None, "measurement"),
    "": (None, None, "measurement"),
}
NUMBER_CLASSES = {"W": "power", "%": None}
_SAFE = re.compile(r"[^a-zA-Z0-9_-]+")


def safe_id(text: str) -> str:
    """An id HA accepts in topics and unique ids (other characters become '_')."""
    return _SAFE.sub("_", text).strip("_") or "x"


def title(point: str) -> str:
    """'pv.power_w' -> 'PV power' (the entity name shown in HA; the device name comes first)."""
    words = point.replace(".", " ").replace("_", " ").split()
    units = {"w", "wh", "v", "a", "hz", "pct", "c", "va", "var"}
    while len(words) > 1 and words[-1] in units:
        words.pop()
    text = " ".join(words)
    return text[:1].upper() + text[1:].replace("pv", "PV")


class Topics:
    """Topic names for one gateway on the local broker."""

    def __init__(self, gateway_id: str, prefix: str = "homeassistant", base: str = "ohm-local") -> None:
        self.gateway = safe_id(gateway_id)
        self.prefix = prefix.strip("/") or "homeassistant"
        self.base = f"{base.strip('/') or 'ohm-local'}/{self.gateway}"
        self.node = safe_id(f"ohm_{self.gateway}")

    def config(self, component: str, device: str, point: str) -> str:
        """The discovery config topic of one entity."""
        return f"{self.prefix}/{component}/{self.node}/{safe_id(f'{device}_{point}')}/config"

    def status(self) -> str:
        """The bridge's availability (last will: offline)."""
        return f"{self.base}/status"

    def availability(self, device: str) -> str:
        """A device's availability: online after a good poll, offline after a failed one."""
        return f"{self.base}/{safe_id(device)}/availability"

    def state(self, device: str) -> str:
        """A device's readings as one JSON object per poll."""
        return f"{self.base}/{safe_id(device)}/state"

    def point_state(self, device: str, point: str) -> str:
        """The last value set on a writable point."""
        return f"{self.base}/{safe_id(device)}/{safe_id(point)}/state"

    def command(self, device: str, point: str) -> str:
        """Where HA sends a new value for a writable point."""
        return f"{self.base}/{safe_id(device)}/{safe_id(point)}/set"

    def command_filter(self) -> str:
        """Subscription covering every command topic."""
        return f"{self.base}/+/+/set"


def device_block(topics: Topics, device_id: str, profile: Profile, name: str = "") -> dict[str, Any]:
    """HA's device registry entry: one HA device per Ohm device, via the gateway."""
    return {
        "identifiers": [f"{topics.node}_{safe_id(device_id)}"],
        "name": name or device_id,
        "manufacturer": profile.maker,
        "model": profile.model,
        "via_device": topics.node,
    }


def _common(topics: Topics, device_id: str, point: str, block: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": title(point),
        "unique_id": f"{topics.node}_{safe_id(device_id)}_{safe_id(point)}",
        "device": block,
        "availability": [{"topic": topics.status()}, {"topic": topics.availability(device_id)}],
        "availability_mode": "all",
    }


def sensor_configs(topics: Topics, device_id: str, profile: Profile, name: str = "") -> list[tuple[str, dict]]:
    """(topic, payload) for every readable point of a device, as HA sensors."""
    block = device_block(topics, device_id, profile, name)
    out = []
    # Meter profiles add derived points (net power, total energy) to what they read.
    for p in getattr(profile, "readings", profile.points):
        unit, device_class, state_class = SENSOR_UNITS.get(p.unit, (p.unit or None, None, "measurement"))
        if p.name == "battery.soc_pct":
            device_class = "battery"
        payload = {
            **_common(topics, device_id, p.name, block),
            "state_topic": topics.state(device_id),
            "value_template": "{{ value_json['" + p.name + "'] }}",
            "state_class": state_class,
        }
        if unit:
            payload["unit_of_measurement"] = unit
        if device_class:
            payload["device_class"] = device_class
        out.append((topics.config("sensor", device_id, p.name), payload))
    return out


def is_switch(spec: WritableSpec) -> bool:
    """An on/off point (0 or 1) is a switch; everything else is a number."""
    return spec.min == 0 and spec.max == 1 and spec.step == 1


def control_configs(topics: Topics, device_id: str, profile: Profile, name: str = "") -> list[tuple[str, dict]]:
    """(topic, payload) for every writable point: `switch` for on/off points, `number` otherwise."""
    block = device_block(topics, device_id, profile, name)
    out = []
    for w in profile.writable:
        payload = {
            **_common(topics, device_id, w.name, block),
            "command_topic": topics.command(device_id, w.name),
            "state_topic": topics.point_state(device_id, w.name),
        }
        if is_switch(w):
            payload.update({"payload_on": "ON", "payload_off": "OFF"})
            out.append((topics.config("switch", device_id, w.name), payload))
            continue
        payload.update({"min": w.min, "max": w.max, "step": w.step, "mode": "box"})
        if w.unit:
            payload["unit_of_measurement"] = w.unit
        if NUMBER_CLASSES.get(w.unit):
            payload["device_class"] = NUMBER_CLASSES[w.unit]
        out.append((topics.config("number", device_id, w.name), payload))
    return out


def state_payload(values: dict[str, Any]) -> str:
    """A device's readings for its state topic (point name -> value)."""
    return json.dumps(values, separators=(",", ":"))


def parse_command(spec: WritableSpec, payload: bytes) -> float:
    """The value HA asks for: 'ON'/'OFF' for a switch, a number for a number (ValueError otherwise)."""
    text = payload.decode("utf-8", "replace").strip()
    if is_switch(spec):
        if text.upper() in ("ON", "OFF"):
            return 1.0 if text.upper() == "ON" else 0.0
        raise ValueError(f"{spec.name}: expected ON or OFF, got {text[:32]!r}")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{spec.name}: expected a number, got {text[:32]!r}") from None


def point_state(spec: WritableSpec, value: float) -> str:
    """What to publish on a writable point's state topic after a set."""
    if is_switch(spec):
        return "ON" if value else "OFF"
    return f"{value:g}"
