"""MQTT uplink (paho-mqtt 2.x): drains the outbox with QoS 1, receives signed commands, and a loopback broker helper."""

from .commands import DEFERRED, CommandRequest, register_command

__all__ = ["DEFERRED", "CommandRequest", "register_command"]
