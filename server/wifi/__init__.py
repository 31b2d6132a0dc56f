"""Wi-Fi through NetworkManager over the system D-Bus (blocking client; run it on a worker)."""

from .networkmanager import (
    AccessPoint,
    NetworkManager,
    WifiNotFound,
    WifiRefused,
    WifiUnavailable,
    check_password,
    check_ssid,
    security_of,
)

__all__ = [
    "AccessPoint",
    "NetworkManager",
    "WifiNotFound",
    "WifiRefused",
    "WifiUnavailable",
    "check_password",
    "check_ssid",
    "security_of",
]
