"""The audit log: bounded, newest first, updates, listeners, persisted across a reopen; API changes recorded."""

from __future__ import annotations

from pathlib import Path

from server.audit import Action, AuditLog


def test_bounded_newest_first_with_updates_and_listeners() -> None:
    seen: list[Action] = []
    log = AuditLog(keep=3, wall=lambda: 1000.0)
    log.on_record(seen.append)
    for i in range(5):
        log.record("admin@127.0.0.1", f"POST /api/x{i}", "ok", detail={"i": i})
    assert len(log) == 3
    recent = log.recent(10)
    assert [a["what"] for a in recent] == ["POST /api/x4", "POST /api/x3", "POST /api/x2"]
    assert recent[0] == {
        "id": 5,
        "at": 1000.0,
        "who": "admin@127.0.0.1",
        "what": "POST /api/x4",
        "result": "ok",
        "detail": {"i": 4},
        "revert": None,
    }
    assert log.update(4, revert="restored 0 W") is not None
    assert log.recent(2)[1]["revert"] == "restored 0 W"
    assert log.update(1, result="x") is None  # aged out
    assert [a.id for a in seen] == [1, 2, 3, 4, 5, 4]
    assert log.recent(0) == []


def test_persisted_and_reloaded_with_ids_continuing(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    first = AuditLog(path, keep=3)
    for i in range(4):
        first.record("backend", f"act{i}", "ok")
    first.update(4, revert="done")
    again = AuditLog(path, keep=3)
    assert [a["what"] for a in again.recent()] == ["act3", "act2", "act1"]
    assert again.recent(1)[0]["revert"] == "done"
    assert again.record("schedule:1", "act4", "ok").id == 5


def test_unreadable_file_starts_a_new_history(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    path.write_bytes(b"not a database" * 100)
    log = AuditLog(path)
    assert log.record("admin", "x", "ok").id == 1 and len(log) == 1
