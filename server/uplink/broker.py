"""Run mosquitto on loopback with a generated config on a free port (tests, benchmarks and the demo).

Never the system daemon and never another address than 127.0.0.1. Plain, username/password,
TLS / mutual TLS (`require_certificate`, identity as user name) and ACL files are supported.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """mosquitto is missing or did not start; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class TlsFiles:
    """Server side TLS: CA, server cert and key; `require_client_cert` for mutual TLS."""

    ca: Path
    cert: Path
    key: Path
    require_client_cert: bool = False


@dataclass
class Broker:
    """A mosquitto process owned by the caller; use as a context manager or call start()/stop()."""

    workdir: Path
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    tls: TlsFiles | None = None
    allow_anonymous: bool | None = None
    persistence: bool = False  # keep sessions and queued messages across restart() (saved on SIGTERM)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()

    @staticmethod
    def available() -> bool:
        """True if the mosquitto binary is installed."""
        return _binary() is not None

    def config_text(self) -> str:
        """The generated mosquitto.conf."""
        lines = [
            f"listener {self.port} {HOST}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # As root mosquitto switches to its own user, which cannot read files in a private temp dir.
            lines.append("user root")
        anonymous = self.allow_anonymous
        if anonymous is None:
            anonymous = not self.users and not (self.tls and self.tls.require_client_cert)
        lines.append(f"allow_anonymous {'true' if anonymous else 'false'}")
        if self.users:
            lines.append(f"password_file {self.workdir / 'passwd'}")
        if self.acl is not None:
            lines.append(f"acl_file {self.workdir / 'acl'}")
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            if self.tls.require_client_cert:
                lines += ["require_certificate true", "use_identity_as_username true"]
        return "\n".join(lines) + "\n"

    def _write(self) -> Path:
        if self.users:
            pw = self.workdir / "passwd"
            pw.write_text("")
            pw.chmod(0o600)
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
        if self.acl is not None:
            (self.workdir / "acl").write_text(self.acl)
            (self.workdir / "acl").chmod(0o600)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        return conf

    def start(self, timeout: float = 5.0) -> Broker:
        """Start mosquitto and wait until it accepts connections."""
        binary = _binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self._write()
        self.log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log_text()[-500:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL) and wait for it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
            self.log = None

    def restart(self) -> Broker:
        """Start again on the same port."""
        self.stop()
        return self.start()

    def log_text(self) -> str:
        """What mosquitto logged."""
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m server.uplink.broker [--port N] [--dir D]`: a loopback mosquitto for the demo, until Ctrl-C."""
    import argparse
    import signal
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m server.uplink.broker", description=main.__doc__)
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--dir", type=Path, help="working directory for config and log (default: a temp dir)")
    args = ap.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="ohm-broker-"))
    try:
        broker = Broker(workdir, port=args.port, persistence=True).start()
    except BrokerError as exc:
        print(f"ohm broker: {exc}", flush=True)
        return 1
    print(f"mosquitto on {HOST}:{broker.port} (config and log in {workdir}); Ctrl-C stops it", flush=True)
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopped and broker.proc is not None and broker.proc.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
