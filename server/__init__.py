"""Ohm gateway service: engine, devices, harvest, crypto, outbox, uplink and local API."""

__version__ = "0.1.0"
