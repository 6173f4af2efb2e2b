"""User-facing errors.

Every problem caused by the user's input (a file, a folder, a flag) is raised as an :class:`S2MError`
whose message is one line naming the file and the problem. The command-line tool prints it as
``error: <message>`` and exits with status 2; a traceback means a bug in s2mnet.
"""

from __future__ import annotations


class S2MError(Exception):
    """A problem with the user's input, reported as one clear line."""


class DataError(S2MError):
    """A dataset folder, image or mask that cannot be used as it is."""


class RunError(S2MError):
    """A run folder or checkpoint that is missing, incomplete or incompatible."""


class ModelConfigError(S2MError, ValueError):
    """An unknown model name or an argument the named model does not take."""


class LossInputError(S2MError):
    """A loss was given logits or targets it cannot use, or an unknown loss name/option."""


class NNUNetSetupError(S2MError):
    """nnU-Net's folders or plans are missing, not planned, or not what ``s2m nnunet`` expects."""


class ExportError(S2MError):
    """A model that cannot be exported, or an export that does not reproduce PyTorch."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and ``timeout`` send), raised where Ctrl-C would be: the same clean-up runs.

    A subclass of :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` and ``finally`` that
    handles Ctrl-C handles it too; the command line prints ``terminated`` and exits with 143.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
