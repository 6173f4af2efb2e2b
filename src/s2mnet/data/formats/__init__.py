"""Dataset formats beyond folders of 2-D images: nnU-Net raw datasets, colour palettes, NIfTI volumes.

:func:`discover_format` is called first by :func:`s2mnet.data.discover`; :func:`apply_palette` last.
"""

from __future__ import annotations

from pathlib import Path

from s2mnet.data.formats.labels import LabelMap


def discover_format(root: Path):
    """The index of an nnU-Net raw dataset or a folder of NIfTI volumes; ``None`` for other folders."""
    from s2mnet.data.formats.nifti import discover_volumes
    from s2mnet.data.formats.nnunet import discover_nnunet, is_nnunet_raw

    if is_nnunet_raw(root):
        return discover_nnunet(root)
    return discover_volumes(root)


def apply_palette(index):
    """See :func:`s2mnet.data.formats.palette.apply_palette`."""
    from s2mnet.data.formats.palette import apply_palette as apply

    return apply(index)


__all__ = ["LabelMap", "apply_palette", "discover_format"]
