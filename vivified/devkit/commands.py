"""The devkit's subcommands of `vivified`: `new plugin` and `demo`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COMMANDS = frozenset({"new", "demo"})


def add_parsers(sub: Any) -> None:
    """Add `new plugin` and `demo` to `vivified`'s subparsers."""
    new = sub.add_parser("new", help="create a new project (a plugin)")
    new_sub = new.add_subparsers(dest="new_command", required=True)
    plugin = new_sub.add_parser("plugin", help="scaffold a FastAPI plugin project on the SDK")
    plugin.add_argument("name", help="the plugin id: lower-case letters, digits and hyphens")
    plugin.add_argument("--contract", help="its contract, e.g. NotificationPlugin")
    plugin.add_argument(
        "--publishes", action="append", default=[], metavar="EVENT", help="a canonical event type"
    )
    plugin.add_argument(
        "--subscribes", action="append", default=[], metavar="EVENT", help="a canonical event type"
    )
    plugin.add_argument("--dir", help="where to create it (default ./NAME)")
    plugin.add_argument("--force", action="store_true", help="write into an existing folder")
    demo = sub.add_parser("demo", help="run core with the three example plugins and their story")
    demo.add_argument("--once", action="store_true", help="exit after the story (0 if it passed)")
    demo.add_argument("--examples", help="the examples folder (default: the clone's examples/)")
    demo.add_argument("--data-dir", help="keep core's data here (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    if args.command == "new":
        from vivified.devkit.scaffold import ScaffoldError, scaffold

        try:
            target = scaffold(
                args.name,
                Path(args.dir) if args.dir else None,
                contract=args.contract,
                publishes=args.publishes,
                subscribes=args.subscribes,
                force=args.force,
            )
        except ScaffoldError as exc:
            print(f"vivified new plugin: {exc}", file=sys.stderr)
            return 2
        print(f"created {target}\n  cd {target} && cat README.md")
        return 0
    from vivified.devkit.demo import run_demo

    return run_demo(
        once=args.once,
        examples=Path(args.examples) if args.examples else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
    )
