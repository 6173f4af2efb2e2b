"""Errors raised by the losses for bad inputs (shapes, class indices, names)."""

from __future__ import annotations

from s2mnet.errors import S2MError


class LossInputError(S2MError):
    """A loss was given logits or targets it cannot use, or an unknown loss name/option."""
