"""python-dbusmock template: the stock bluez5 mock plus GattManager1 on an adapter hci0 (what bless needs).

The stock template has LEAdvertisingManager1 but no GattManager1. RegisterApplication records the
application path on the adapter (`gatt_apps`), so a test can check it; UnregisterApplication removes it.
"""

import dbus
from dbusmock.templates import bluez5
from dbusmock.templates.bluez5 import AddDevice  # noqa: F401 - re-exported: the mock's org.bluez.Mock method

BUS_NAME = bluez5.BUS_NAME
MAIN_OBJ = bluez5.MAIN_OBJ
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

GATT_MANAGER_IFACE = "org.bluez.GattManager1"


def load(mock, parameters):
    """The bluez5 template, then adapter hci0 with GattManager1."""
    bluez5.load(mock, parameters)
    bluez5.mockobject.objects.setdefault(MAIN_OBJ, mock)  # AddAdapter looks the manager up there
    path = bluez5.AddAdapter(mock, "hci0", "ohm-test")
    adapter = bluez5.mockobject.objects[path]
    adapter.gatt_apps = []
    adapter.props[GATT_MANAGER_IFACE] = dbus.Dictionary({}, signature="sv")  # listed, no properties (as BlueZ)
    adapter.AddMethods(
        GATT_MANAGER_IFACE,
        [
            ("RegisterApplication", "oa{sv}", "", "self.gatt_apps.append(str(args[0]))"),
            ("UnregisterApplication", "o", "", "self.gatt_apps.remove(str(args[0]))"),
        ],
    )
