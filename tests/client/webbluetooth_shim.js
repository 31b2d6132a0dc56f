// Test-only navigator.bluetooth: each Web Bluetooth call goes through window.__ohmBle (Playwright expose_function)
// to a Python bumble central that talks to a real GATT server on a bumble virtual link. Notifications and
// disconnections come back through window.__ohmNotify / window.__ohmDisconnected.
(() => {
  const toB64 = (u8) => btoa(String.fromCharCode(...u8));
  const fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const bytesOf = (v) =>
    v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

  async function bridge(op, args = {}) {
    const reply = JSON.parse(await window.__ohmBle(JSON.stringify({ op, ...args })));
    if (reply.error) throw new DOMException(reply.message, reply.error);
    return reply.value;
  }

  const characteristics = new Map();
  const devices = new Map();

  class Characteristic extends EventTarget {
    constructor(service, uuid, id) {
      super();
      this.service = service;
      this.uuid = uuid;
      this._id = id;
      this.value = null;
      characteristics.set(id, this);
    }
    async readValue() {
      const u8 = fromB64(await bridge("read", { char: this._id }));
      this.value = new DataView(u8.buffer);
      return this.value;
    }
    writeValueWithResponse(v) {
      return bridge("write", { char: this._id, data: toB64(bytesOf(v)), response: true });
    }
    writeValueWithoutResponse(v) {
      return bridge("write", { char: this._id, data: toB64(bytesOf(v)), response: false });
    }
    writeValue(v) {
      return this.writeValueWithResponse(v);
    }
    async startNotifications() {
      await bridge("notify", { char: this._id });
      return this;
    }
    async stopNotifications() {
      return this;
    }
  }

  class Service {
    constructor(device, uuid, id) {
      this.device = device;
      this.uuid = uuid;
      this._id = id;
      this.isPrimary = true;
    }
    async getCharacteristic(uuid) {
      const id = await bridge("characteristic", { service: this._id, uuid });
      return new Characteristic(this, uuid, id);
    }
  }

  class GattServer {
    constructor(device) {
      this.device = device;
      this.connected = false;
    }
    async connect() {
      await bridge("connect", { device: this.device.id });
      this.connected = true;
      return this;
    }
    disconnect() {
      bridge("disconnect", { device: this.device.id }).catch(() => undefined);
    }
    async getPrimaryService(uuid) {
      const id = await bridge("service", { device: this.device.id, uuid });
      return new Service(this.device, uuid, id);
    }
  }

  class Device extends EventTarget {
    constructor(id, name) {
      super();
      this.id = id;
      this.name = name;
      this.gatt = new GattServer(this);
      devices.set(id, this);
    }
  }

  window.__ohmNotify = (charId, data) => {
    const c = characteristics.get(charId);
    if (!c) return;
    c.value = new DataView(fromB64(data).buffer);
    c.dispatchEvent(new Event("characteristicvaluechanged"));
  };
  window.__ohmDisconnected = (deviceId) => {
    const d = devices.get(deviceId);
    if (!d || !d.gatt.connected) return;
    d.gatt.connected = false;
    d.dispatchEvent(new Event("gattserverdisconnected"));
  };

  Object.defineProperty(navigator, "bluetooth", {
    configurable: true,
    value: {
      async requestDevice(options) {
        const found = await bridge("requestDevice", { options });
        return new Device(found.id, found.name);
      },
      async getAvailability() {
        return true;
      },
    },
  });
})();
