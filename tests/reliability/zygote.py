"""Starts real gateway processes fast for the kill -9 tests: imports once, then forks a child per start.

A child is a complete `python -m server run` (every default service, the API, the devices) that
skips the ~0.5 s of imports, so 50 unclean shutdowns fit in a CI run. Forking happens before this
process starts any thread. Protocol on stdin/stdout, one JSON object a line:
  {"op": "spawn", "env": {...}, "log": "/path"}  -> {"pid": N}
  {"op": "reap", "pid": N}                     -> {"pid": N, "status": S}   (waits for the child)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import server
import server.cli as cli
from server.services import default_services

default_services()  # the lazy imports of every service, paid once here
for _mod in pkgutil.walk_packages(server.__path__, "server."):
    if not _mod.name.endswith("__main__"):
        with contextlib.suppress(Exception):  # an optional backend's library may be missing: fine
            importlib.import_module(_mod.name)  # the imports services make inside attach()


def _child(env: dict[str, str], log: str) -> None:
    for key in [k for k in os.environ if k.startswith("OHM_")]:
        del os.environ[key]  # exactly the settings asked for (the gateway refuses unknown OHM_ variables)
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    code = 1
    try:
        code = cli.main(["run"]) or 0
    finally:
        sys.stdout.flush()
        os._exit(code)


def main() -> None:
    """Serve spawn/reap requests until stdin closes."""
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(req["env"], req["log"])
            print(json.dumps({"pid": pid}), flush=True)
        elif req["op"] == "reap":
            _, status = os.waitpid(req["pid"], 0)
            print(json.dumps({"pid": req["pid"], "status": status}), flush=True)


if __name__ == "__main__":
    main()
