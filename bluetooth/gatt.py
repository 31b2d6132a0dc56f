"""GATT and advertisement definitions shared by every backend: plain data, no BLE stack."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Improv Wi-Fi over BLE (https://www.improv-wifi.com/ble/).
IMPROV_SERVICE = "00467768-6228-2272-4663-277478268000"
IMPROV_STATE = "00467768-6228-2272-4663-277478268001"
IMPROV_ERROR = "00467768-6228-2272-4663-277478268002"
IMPROV_RPC = "00467768-6228-2272-4663-277478268003"
IMPROV_RESULT = "00467768-6228-2272-4663-277478268004"
IMPROV_CAPABILITIES = "00467768-6228-2272-4663-277478268005"
IMPROV_SERVICE_DATA_UUID = 0x4677

# Ohm's own request channel ("ohm" in hex).
OHM_SERVICE = "6f686d00-0000-4000-8000-6f686d000001"
OHM_RX = "6f686d00-0000-4000-8000-6f686d000002"
OHM_TX = "6f686d00-0000-4000-8000-6f686d000003"
OHM_INFO = "6f686d00-0000-4000-8000-6f686d000004"

NAME_PREFIX = "Ohm-"
MAX_ADVERT = 31


class Prop(enum.IntFlag):
    """Characteristic properties (the bits of the GATT declaration)."""

    READ = 0x02
    WRITE_NO_RESPONSE = 0x04
    WRITE = 0x08
    NOTIFY = 0x10


@dataclass(frozen=True)
class CharDef:
    """One characteristic: UUID and properties; values come from the handler's read callback."""

    uuid: str
    props: Prop


@dataclass(frozen=True)
class ServiceDef:
    """One primary service and its characteristics."""

    uuid: str
    chars: tuple[CharDef, ...]


def _uuid128(uuid: str) -> bytes:
    return bytes.fromhex(uuid.replace("-", ""))[::-1]  # little-endian on air


@dataclass(frozen=True)
class Advert:
    """What the gateway advertises: local name, 16-bit service data, 128-bit service UUIDs.

    `uuids` go into the advertising data itself; `scan_uuids` into the scan response. An empty name is left out.
    """

    name: str
    service_data: dict[int, bytes] = field(default_factory=dict)
    scan_uuids: tuple[str, ...] = ()
    uuids: tuple[str, ...] = ()

    def payload(self) -> bytes:
        """The legacy advertising data (flags, UUIDs, name, service data); raises if it exceeds 31 bytes."""
        out = bytearray(b"\x02\x01\x06")  # LE general discoverable, BR/EDR not supported
        if self.uuids:
            raw = b"".join(_uuid128(u) for u in self.uuids)
            out += bytes([len(raw) + 1, 0x07]) + raw
        if self.name:
            name = self.name.encode()
            out += bytes([len(name) + 1, 0x09]) + name
        for uuid16, data in self.service_data.items():
            out += bytes([len(data) + 3, 0x16]) + uuid16.to_bytes(2, "little") + data
        if len(out) > MAX_ADVERT:
            raise ValueError(f"advertisement is {len(out)} bytes, more than {MAX_ADVERT}")
        return bytes(out)

    def scan_response(self) -> bytes:
        """The scan response: complete lists of 128-bit service UUIDs that fit in 31 bytes."""
        out = bytearray()
        for uuid in self.scan_uuids:
            if len(out) + 18 > MAX_ADVERT:
                break
            out += bytes([17, 0x07]) + _uuid128(uuid)
        return bytes(out)


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef(
        IMPROV_SERVICE,
        (
            CharDef(IMPROV_STATE, Prop.READ | Prop.NOTIFY),
            CharDef(IMPROV_ERROR, Prop.READ | Prop.NOTIFY),
            CharDef(IMPROV_RPC, Prop.WRITE | Prop.WRITE_NO_RESPONSE),
            CharDef(IMPROV_RESULT, Prop.READ | Prop.NOTIFY),
            CharDef(IMPROV_CAPABILITIES, Prop.READ),
        ),
    ),
    ServiceDef(
        OHM_SERVICE,
        (
            CharDef(OHM_RX, Prop.WRITE | Prop.WRITE_NO_RESPONSE),
            CharDef(OHM_TX, Prop.NOTIFY),
            CharDef(OHM_INFO, Prop.READ),
        ),
    ),
)
