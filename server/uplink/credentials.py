"""How a paho client proves who it is: user name and password, TLS and mutual TLS, in one place."""

from __future__ import annotations

import ssl
from typing import Protocol

import paho.mqtt.client as mqtt


class Credentials(Protocol):
    """The settings both the gateway's uplink and the reference consumer carry."""

    username: str
    password: str
    tls: bool
    ca_file: str
    cert_file: str
    key_file: str


def apply_credentials(client: mqtt.Client, s: Credentials) -> None:
    """Set user/password and (mutual) TLS on a paho client before it connects; the broker is always verified."""
    if s.username:
        client.username_pw_set(s.username, s.password or None)
    if s.tls:
        client.tls_set(
            ca_certs=s.ca_file or None,
            certfile=s.cert_file or None,
            keyfile=s.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
