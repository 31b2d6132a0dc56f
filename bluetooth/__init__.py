"""Ohm BLE provisioning service (Improv Wi-Fi and the Ohm request channel over GATT)."""

__version__ = "0.1.0"
