"""Password, mutual TLS and ACL broker configurations, with the real gateway services and consumer."""

import time

import pytest

from server.crypto.software import SoftwareSigner
from server.statemachine import State
from server.uplink.broker import TlsFiles
from tests.support import wait_for

from .conftest import snap

pytestmark = pytest.mark.integration


def _deliver(gw, consumer, n=5):
    wait_for(lambda: gw.state is State.ONLINE, 10, why=lambda: str(gw.services["uplink"].stats()))
    for i in range(n):
        gw.bus.publish(snap("m1", i))
    gid = gw.services["identity"].device_id
    wait_for(lambda: consumer.store.sequences(gid) == list(range(1, n + 1)))


def test_password_auth(mosquitto_factory, gateway_factory, consumer_factory):
    broker = mosquitto_factory(users={"gw": "s3cret", "backend": "b4ck"})
    consumer = consumer_factory(broker, username="backend", password="b4ck")
    bad = gateway_factory(broker, data="bad", mqtt__username="gw", mqtt__password="wrong")
    good = gateway_factory(broker, data="good", mqtt__username="gw", mqtt__password="s3cret")
    _deliver(good, consumer)
    assert bad.state is State.OFFLINE and not bad.services["uplink"].connected


def test_mutual_tls(mosquitto_factory, gateway_factory, consumer_factory, pki, tmp_path):
    broker = mosquitto_factory(tls=TlsFiles(pki.ca_cert, pki.server_cert, pki.server_key, require_client_cert=True))
    ccert, ckey = pki.client("backend")
    consumer = consumer_factory(broker, tls=True, ca_file=str(pki.ca_cert), cert_file=str(ccert), key_file=str(ckey))
    gcert, gkey = pki.client("gateway")
    gw = gateway_factory(
        broker, mqtt__tls=True, mqtt__ca_file=str(pki.ca_cert), mqtt__cert_file=str(gcert), mqtt__key_file=str(gkey)
    )
    _deliver(gw, consumer)
    # Without a client certificate the broker refuses the TLS handshake.
    nocert = gateway_factory(broker, data="nocert", mqtt__tls=True, mqtt__ca_file=str(pki.ca_cert))
    time.sleep(0.5)
    assert nocert.state is State.OFFLINE


def test_acl_lets_a_gateway_write_only_its_own_topics(mosquitto_factory, gateway_factory, consumer_factory, tmp_path):
    # Identities are made up front so the ACL can name the gateway's topics.
    allowed = SoftwareSigner.load_or_create(tmp_path / "ok")
    acl = (
        "user backend\ntopic read ohm/+/telemetry\ntopic read ohm/+/cmd/result\ntopic read ohm/+/events\n\n"
        f"user gw\ntopic write ohm/{allowed.device_id}/#\ntopic read ohm/{allowed.device_id}/cmd\n"
    )
    broker = mosquitto_factory(users={"gw": "pw", "backend": "pw"}, acl=acl)
    consumer = consumer_factory(broker, username="backend", password="pw")
    ok = gateway_factory(broker, data="ok", mqtt__username="gw", mqtt__password="pw")
    assert ok.services["identity"].device_id == allowed.device_id
    _deliver(ok, consumer)
    # Another gateway with the same user but another id: the broker refuses its publishes (MQTT 5 PUBACK
    # 0x87); nothing is deleted from its outbox, nothing reaches the consumer.
    other = gateway_factory(broker, data="other", mqtt__username="gw", mqtt__password="pw")
    wait_for(lambda: other.state is State.ONLINE, 10)
    for i in range(3):
        other.bus.publish(snap("m1", i))
    wait_for(lambda: other.services["uplink"].counters["refused"] >= 1)
    assert other.services["outbox"].store.rows >= 1
    assert consumer.store.sequences(other.services["identity"].device_id) == []
