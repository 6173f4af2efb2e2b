"""The ``s2m`` command line: one module per command, registered here in the order ``s2m --help`` lists them.

``demo``, ``analyze``, ``train``, ``evaluate``, ``predict``, ``export``, ``models``, ``reproduce``,
``bench`` (``efficiency``, ``spectral``, ``ablation``) and ``nnunet`` (``add-config``, ``convert``). Each
command module has ``register(commands)`` (its parser, with ``handler=run``) and ``run(args)``; both
import only argparse and light modules, and the work's heavy imports (torch, MONAI) happen inside
``run``, so ``s2m --help`` and mistakes in paths or flags are answered at once.

Errors caused by the user's input (:class:`s2mnet.errors.S2MError`) are printed as one line
``error: <message>`` on stderr and the exit status is 2; a traceback means a bug in s2mnet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from s2mnet import __version__
from s2mnet.cli import analyze, bench, demo, evaluate, export, models, predict, reproduce, train
from s2mnet.errors import S2MError
from s2mnet.nnunet import commands as nnunet

EXIT_USER_ERROR = 2
#: The command modules, in the order of ``s2m --help``.
COMMANDS = (demo, analyze, train, evaluate, predict, export, models, reproduce, bench, nnunet)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``s2m`` command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = ["s2m", *argv]
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except S2MError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands (also used to document them in docs/tool.md)."""
    parser = argparse.ArgumentParser(
        prog="s2m",
        description="S2M-Net medical image segmentation: analyse a dataset, train, evaluate, predict.",
    )
    parser.add_argument("--version", action="version", version=f"s2m {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser
