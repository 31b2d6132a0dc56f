"""GET /api/logs and PUT /api/logs/level over real HTTP; the ring log itself as a unit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from server.api.logbuffer import RingLog

from .conftest import Api


@pytest.fixture
def root_level() -> Iterator[None]:
    """Put the root log level back after a test changed it."""
    before = logging.getLogger().level
    try:
        yield
    finally:
        logging.getLogger().setLevel(before)


def test_ring_keeps_the_newest_and_masks_secrets() -> None:
    ring = RingLog(keep=3, secrets=["s3cret-token"])
    logger = logging.getLogger("test.ring")
    logger.addHandler(ring)
    logger.setLevel(logging.DEBUG)
    try:
        for i in range(5):
            logger.info("line %d", i)
        logger.error("leaked s3cret-token here")
    finally:
        logger.removeHandler(ring)
    records = ring.recent()
    assert [r["message"] for r in records] == ["line 3", "line 4", "leaked *** here"]
    assert [r["seq"] for r in records] == [4, 5, 6]
    assert [r["message"] for r in ring.recent("error")] == ["leaked *** here"]
    assert [r["message"] for r in ring.recent(limit=1)] == ["leaked *** here"]


@pytest.mark.integration
def test_logs_and_level_change(api_gateway: Api, root_level: None) -> None:
    admin = api_gateway.client(api_gateway.admin)
    reader = api_gateway.client(api_gateway.read)
    try:
        assert reader.call("PUT", "/api/logs/level", {"level": "debug"}).status == 403
        got = admin.call("PUT", "/api/logs/level", {"level": "info"})
        assert got.status == 200 and got.json["level"] == "info"
        assert logging.getLogger().level == logging.INFO
        logging.getLogger("ohm.test").info("visible at info")
        logging.getLogger("ohm.test").debug("hidden at info")

        got = reader.call("GET", "/api/logs")
        assert got.status == 200 and got.json["level"] == "info"
        messages = [r["message"] for r in got.json["records"]]
        assert "visible at info" in messages and "hidden at info" not in messages
        assert any("log level set to info" in m for m in messages)

        warn = reader.call("GET", "/api/logs?level=warning&limit=500").json["records"]
        assert warn and all(r["level"] in ("warning", "error", "critical") for r in warn)
        assert len(reader.call("GET", "/api/logs?limit=1").json["records"]) == 1

        # Neither token shows up anywhere in the records (they are never logged, and masked if they were).
        body = admin.call("GET", "/api/logs").body.decode()
        assert api_gateway.admin not in body and api_gateway.read not in body
        assert reader.call("GET", "/api/logs", token=None).status == 401
    finally:
        admin.close()
        reader.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("method", "path", "body", "detail"),
    [
        ("GET", "/api/logs?level=loud", None, "level: must be one of"),
        ("GET", "/api/logs?limit=0", None, "limit: must be 1-500"),
        ("GET", "/api/logs?limit=501", None, "limit: must be 1-500"),
        ("GET", "/api/logs?limit=ten", None, "limit: must be an integer"),
        ("GET", "/api/logs?lvl=info", None, "unknown query parameter 'lvl'"),
        ("PUT", "/api/logs/level", {"level": "verbose"}, "level: must be one of"),
        ("PUT", "/api/logs/level", {"level": 10}, "level: must be a JSON string"),
        ("PUT", "/api/logs/level", {}, "level: required"),
        ("PUT", "/api/logs/level", {"level": "info", "x": 1}, "level: required, and nothing else"),
    ],
)
def test_bad_log_requests_are_422(
    api_gateway: Api, root_level: None, method: str, path: str, body: object, detail: str
) -> None:
    admin = api_gateway.client(api_gateway.admin)
    try:
        got = admin.call(method, path, body)
        assert got.status == 422 and detail in got.json["detail"], got.json
    finally:
        admin.close()
