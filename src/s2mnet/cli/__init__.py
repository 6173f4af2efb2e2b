"""The ``s2m`` command line: one module per command, registered here in the order ``s2m --help`` lists them.

``demo``, ``analyze``, ``train``, ``evaluate``, ``predict``, ``export``, ``models``, ``reproduce``,
``bench`` (``efficiency``, ``spectral``, ``ablation``) and ``nnunet`` (``add-config``, ``convert``). Each
command module has ``register(commands)`` (its parser, with ``handler=run``) and ``run(args)``; both
import only argparse and light modules, and the work's heavy imports (torch, MONAI) happen inside
``run``, so ``s2m --help`` and mistakes in paths or flags are answered at once.

Errors caused by the user's input (:class:`s2mnet.errors.S2MError`) are printed as one line
``error: <message>`` on stderr and the exit status is 2; so are errors of the machine the files live on
(a folder that cannot be written, a full disk, a file-size limit), naming the file. Ctrl-C prints
``interrupted`` (exit 130) and SIGTERM ``terminated`` (exit 143), after the same clean-up. A traceback
means a bug in s2mnet.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from s2mnet import __version__
from s2mnet.cli import analyze, bench, demo, evaluate, export, models, predict, reproduce, train
from s2mnet.errors import S2MError, Terminated
from s2mnet.nnunet import commands as nnunet

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: Errors of the machine rather than of s2mnet: reported in one line naming the file.
MACHINE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file-size limit reached)",
}
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
    previous = _catch_sigterm()
    try:
        return int(args.handler(args) or 0)
    except S2MError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in MACHINE_ERRNOS:
            raise
        where = exc.filename if exc.filename is not None else "s2m"
        print(f"error: {where}: {MACHINE_ERRNOS[exc.errno]}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _catch_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` (handled like Ctrl-C); returns the handler to restore.

    Only in the main thread and when SIGTERM still has its default action (a caller's own handler is
    kept). A second SIGTERM during the clean-up is ignored, so the clean-up finishes.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def terminate(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    return signal.signal(signal.SIGTERM, terminate)


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
