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
