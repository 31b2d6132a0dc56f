"""Command line of the gateway: `python -m server [run] [options]`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from server import __version__
from server.config import FIELDS, ConfigError, load

log = logging.getLogger("ohm")

DESCRIPTION = """\
Ohm energy gateway. Reads inverters, batteries and meters, signs every reading and
delivers it over MQTT without losing any. Settings come from defaults, then a TOML file
(--config or OHM_CONFIG), then settings stored through the API (<data_dir>/settings.json),
then OHM_* environment variables, then these options.
"""

Command = Callable[[argparse.Namespace], int]
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {}


def subcommand(
    name: str, help_text: str, add_args: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Command], Command]:
    """Register a subcommand of `python -m server` (later packages add verify, consume...)."""

    def register(fn: Command) -> Command:
        SUBCOMMANDS[name] = (help_text, add_args, fn)
        return fn

    return register


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, default=os.environ.get("OHM_CONFIG"), help="TOML settings file (env OHM_CONFIG)"
    )
    p.add_argument("--data-dir", type=Path, help="where settings, keys and the outbox are kept (env OHM_DATA_DIR)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log verbosity")
    p.add_argument(
        "--demo",
        action="store_true",
        help="a first look: a simulated inverter and meter, a loopback broker and a verifying consumer "
        "around the gateway; data in ./.demo-data, figures every 5 s",
    )
    p.add_argument("--run-for", type=float, metavar="SECONDS", help="stop by itself after SECONDS (smoke tests)")
    p.add_argument("--check-config", action="store_true", help="validate the settings, print them and exit")


@subcommand("run", "run the gateway (the default)", _run_args)
def cmd_run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM/SIGINT (or --run-for)."""
    overrides: dict[str, Any] = {"data_dir": args.data_dir, "log_level": args.log_level}
    demo = None
    if args.demo and not args.check_config:
        from server.demo import Demo

        overrides["data_dir"] = args.data_dir or Path(".demo-data")
        overrides["stats_interval"] = 5.0
        try:
            config = load(args.config, overrides=overrides)  # validate before starting anything
        except ConfigError as exc:
            print(f"ohm: {exc}", file=sys.stderr)
            return 2
        demo = Demo(config.data_dir)
        try:
            overrides.update(demo.start())
        except Exception as exc:  # noqa: BLE001 - a clear line, then clean up what started
            demo.stop()
            print(f"ohm demo: could not start its simulators/broker: {exc}", file=sys.stderr)
            return 1
    try:
        config = load(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"ohm: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    if args.check_config:
        for key, value, source in config.describe():
            print(f"{key:<24} {value:<30} {source}")
        return 0

    from server.gateway import Gateway, summary_line
    from server.services import default_services

    report = None
    if demo is not None:

        def report(stats: dict[str, Any]) -> None:
            print(f"[demo] state {gateway.state.value}: {summary_line(stats)}", flush=True)
            print(demo.report(gateway), flush=True)

    gateway = Gateway(config, report=report, services=default_services())
    install_signal_handlers(gateway.stop, config.shutdown_timeout)
    if args.run_for is not None:
        timer = threading.Timer(args.run_for, gateway.stop)
        timer.daemon = True
        timer.start()
    log.info("Ohm gateway %s starting (data in %s)", __version__, config.data_dir)
    if demo is not None:
        print(f"[demo] Ohm gateway {__version__} running, data in {config.data_dir}; Ctrl-C stops it.", flush=True)
        print(demo.banner(), flush=True)
        print("[demo] the dashboard comes with the rest of the API; readings show below every 5 s.", flush=True)
    try:
        gateway.run()
    finally:
        if demo is not None:
            demo.stop()
    if demo is not None:
        print(f"[demo] stopped: {demo.report(gateway)}", flush=True)
    log.info("stopped cleanly")
    return gateway.exit_code  # 75 after POST /api/system/restart: the supervisor starts us again


def setup_logging(level: str) -> None:
    """Log to stderr in a format that container logs keep readable."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def install_signal_handlers(stop: Callable[[], None], timeout: float) -> None:
    """SIGTERM/SIGINT stop gracefully; past the deadline, or on a second signal, exit hard."""
    state = {"signals": 0}

    def handler(signum: int, _frame: object) -> None:
        state["signals"] += 1
        if state["signals"] > 1:
            os._exit(128 + signum)
        log.info("%s received: stopping (at most %.1f s)", signal.Signals(signum).name, timeout)
        # stop() takes the engine lock, which this thread may hold right now: do it elsewhere.
        threading.Thread(target=stop, name="ohm-stop", daemon=True).start()
        watchdog = threading.Timer(timeout + 0.5, _force_exit)
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _force_exit() -> None:
    log.error("clean stop took too long; exiting now")
    logging.shutdown()
    os._exit(1)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand."""
    settings = "\n".join(f"  {f.env:<26} {f.help}" for f in FIELDS)
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description=DESCRIPTION,
        epilog=f"environment variables:\n{settings}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ohm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (help_text, add_args, fn) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def _run_help(parser: argparse.ArgumentParser) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["run"].format_help()
    return text.split("options:", 1)[-1].rstrip()


# Modules that register more subcommands with @subcommand (verify, consume, ...).
COMMAND_MODULES: tuple[str, ...] = (
    "server.telemetry.cli",
    "server.consumer.cli",
    "server.devices.cli",
    "server.api.system_cli",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; without a subcommand, `run` is assumed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    head = argv[0] if argv else "run"
    # A gateway run needs none of the other commands: skipping their imports (consumer, verifier, ...) saves
    # start-up time and memory on a Pi Zero. Anything else may name one of them, so they register first.
    if head != "run" and (not head.startswith("-") or head in ("-h", "--help", "--version")):
        for module in COMMAND_MODULES:
            importlib.import_module(module)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    parser = build_parser()
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        print(f"\noptions of run (the default command):\n{_run_help(parser)}")
        return 0
    args = parser.parse_args(argv)
    return args.func(args)


__all__ = ["main", "subcommand"]
