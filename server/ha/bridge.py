"""The Home Assistant bridge: its own MQTT connection to the local broker (never the backend uplink).

On connect it publishes (retained) the discovery config of every device's sensors and controls and
its own availability (last will: offline); each snapshot goes out as the device's state and
availability; a value HA sends on a command topic becomes a control action by "homeassistant"
with local priority (it is the owner's own automation on the LAN), and the point's state topic
shows the value once the device took it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from server.bus import DeviceEvent, Snapshot
from server.devices.meters import load_any_profile as load_profile  # Modbus or meter (P1, HomeWizard, Envoy)
from server.devices.profile import ProfileError

from .discovery import Topics, control_configs, parse_command, point_state, safe_id, sensor_configs, state_payload

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.ha")
WHO = "homeassistant"


class HaBridge:
    """Discovery, states and commands between the gateway and Home Assistant's broker."""

    def __init__(self, gateway: Any, topics: Topics, host: str, port: int, username: str = "", password: str = ""):
        self.gateway = gateway
        self.topics = topics
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._published: dict[str, list[str]] = {}  # device -> config topics it has
        self._commands: dict[str, tuple[str, str]] = {}  # command topic -> (device, point)
        self.connected = threading.Event()
        self.counters = {"configs": 0, "states": 0, "commands": 0, "refused": 0}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{topics.node}-ha", protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password or None)
        self.client.will_set(topics.status(), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> HaBridge:
        """Connect in the background (paho reconnects by itself) and follow the bus."""
        self.gateway.bus.on_snapshot(self._on_snapshot)
        self.gateway.bus.on_event(self._on_event)
        control = (self.gateway.services or {}).get("control")
        if control is not None:
            control.on_value(self._point_changed)  # any owner's confirmed writes and reverts, not only HA's
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Say offline and disconnect (shutdown hook)."""
        if self.connected.is_set():
            self.client.publish(self.topics.status(), "offline", qos=1, retain=True).wait_for_publish(1)
        self.client.disconnect()
        self.client.loop_stop()

    # ---- paho callbacks (paho's thread: quick, non-blocking) --------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            log.warning("Home Assistant broker %s:%d refused the connection: %s", self.host, self.port, rc)
            return
        log.info("Home Assistant broker %s:%d connected", self.host, self.port)
        client.subscribe(self.topics.command_filter(), qos=1)
        devices = (self.gateway.services or {}).get("devices")
        for cfg in devices.list() if devices is not None else []:
            self._announce(cfg)
        client.publish(self.topics.status(), "online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connected.clear()
        log.info("Home Assistant broker disconnected (%s); paho reconnects", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            target = self._commands.get(msg.topic)
        if target is None:
            return
        self.counters["commands"] += 1
        self._command(*target, msg.payload)

    # ---- bus --------------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        if not self.connected.is_set():
            return
        avail = "online" if snap.online else "offline"
        self.client.publish(self.topics.availability(snap.device_id), avail, qos=0, retain=True)
        if snap.online:
            self.client.publish(self.topics.state(snap.device_id), state_payload(snap.values()), qos=0, retain=True)
            self.counters["states"] += 1

    def _on_event(self, event: DeviceEvent) -> None:
        if not self.connected.is_set() or event.device_id is None:
            return
        if event.kind in ("device.added", "device.changed"):
            devices = (self.gateway.services or {}).get("devices")
            try:
                cfg = devices.get(event.device_id).as_dict() if devices is not None else None
            except KeyError:
                return
            if cfg is not None:
                self._forget(event.device_id)
                self._announce(cfg)
        elif event.kind == "device.removed":
            self._forget(event.device_id)

    # ---- discovery --------------------------------------------------------------------------

    def _announce(self, cfg: dict[str, Any]) -> None:
        if not cfg.get("enabled", True):
            return
        try:
            profile = load_profile(cfg["profile"])
        except ProfileError:
            return
        device = cfg["id"]
        messages = sensor_configs(self.topics, device, profile, cfg.get("name") or "")
        messages += control_configs(self.topics, device, profile, cfg.get("name") or "")
        for topic, payload in messages:
            self.client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
        with self._lock:
            self._published[device] = [t for t, _ in messages]
            for w in profile.writable:
                self._commands[self.topics.command(device, w.name)] = (device, w.name)
        self.counters["configs"] += len(messages)

    def _forget(self, device: str) -> None:
        """Remove a device's entities from HA (an empty retained config deletes one)."""
        with self._lock:
            topics = self._published.pop(device, [])
            for key in [k for k, v in self._commands.items() if v[0] == device]:
                del self._commands[key]
        for topic in topics:
            self.client.publish(topic, b"", qos=1, retain=True)

    def _point_changed(self, device: str, point: str, value: float) -> None:
        if not self.connected.is_set():
            return
        try:
            profile = load_profile(self.gateway.services["devices"].get(device).profile)
            spec = next(w for w in profile.writable if w.name == point)
        except (KeyError, StopIteration, ProfileError):
            return
        self.client.publish(self.topics.point_state(device, point), point_state(spec, value), qos=1, retain=True)

    # ---- commands ---------------------------------------------------------------------------

    def _command(self, device: str, point: str, payload: bytes) -> None:
        from server.control.model import Conflict, Invalid

        services = self.gateway.services or {}
        control, audit = services.get("control"), services.get("audit")
        try:
            profile = load_profile(services["devices"].get(device).profile)
            spec = next(w for w in profile.writable if w.name == point)
            value = parse_command(spec, payload)
            if control is None:
                raise Invalid("the control service is not running")

            control.submit({"device": device, "point": point, "value": value}, WHO, "local")
        except (Invalid, Conflict, ValueError, KeyError, StopIteration, ProfileError) as exc:
            self.counters["refused"] += 1
            log.warning("Home Assistant set of %s on %s refused: %s", point, device, exc)
            if audit is not None:
                audit.record(WHO, f"set {point} on {device}", f"refused: {exc}"[:300])


def gateway_id(gateway: Any) -> str:
    """The gateway's id for topics and unique ids (the identity's device id when there is one)."""
    signer = (gateway.services or {}).get("identity")
    return safe_id(signer.device_id) if signer is not None else "gateway"


def attach(gateway: Gateway) -> None:
    """Start the bridge if `ha.enabled`; a missing broker only means HA waits (paho retries)."""
    cfg = gateway.config
    if not cfg.get("ha.enabled", False):
        return
    topics = Topics(gateway_id(gateway), str(cfg.get("ha.prefix")), str(cfg.get("ha.base_topic")))
    bridge = HaBridge(
        gateway,
        topics,
        str(cfg.get("ha.host")),
        int(cfg.get("ha.port")),
        str(cfg.get("ha.username") or ""),
        str(cfg.get("ha.password") or ""),
    )
    gateway.services["ha"] = bridge
    gateway.engine.on_shutdown("ha", bridge.stop)
    bridge.start()
    log.info("Home Assistant discovery to %s:%d under %s/", bridge.host, bridge.port, topics.prefix)
