"""Devices: profiles as data, Modbus transports, pollers, discovery; `attach(gateway)` starts the service."""
