"""Simulator of inverters and meters over Modbus TCP and RTU, served from the gateway's profile files."""
