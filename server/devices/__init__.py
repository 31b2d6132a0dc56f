"""Devices: profiles as data, Modbus transports, pollers, discovery; `attach(gateway)` starts the service."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.gateway import Gateway


def attach(gateway: Gateway) -> None:
    """Open the device list under the data directory and start polling every stored device."""
    from .service import DeviceService
    from .store import DeviceStore

    cfg = gateway.config
    store = DeviceStore(gateway.data_dir / "devices.sqlite")
    service = DeviceService(
        gateway.engine,
        gateway.bus,
        store,
        backoff_cap=float(_setting(cfg, "devices.backoff_cap", 10.0)),
        mdns_interfaces=_mdns_interfaces(cfg),
    )
    gateway.services["devices"] = service
    gateway.engine.on_shutdown("devices", service.close)
    service.start()
    from .commands import register as register_commands  # modbus.read/write, devices.* for the backend

    register_commands()


def _mdns_interfaces(cfg: object) -> list[str] | None:
    """mDNS discovery listens where the API does: one address, or every interface for 0.0.0.0 / unset."""
    get = getattr(cfg, "get", None)
    host = get("api.host") if get is not None else None
    return [host] if isinstance(host, str) and host.count(".") == 3 and host != "0.0.0.0" else None


def _setting(cfg: object, key: str, default: float) -> float:
    get = getattr(cfg, "get", None)
    value = get(key) if get is not None else None
    return default if value is None else value
