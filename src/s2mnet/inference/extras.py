"""The optional outputs of ``s2m predict``: probability maps and overlays, beside the masks.

* ``--probabilities``: ``OUTPUT/probabilities/<stem>.npy``, a float32 ``(C, H, W)`` array at the image's
  size: C = 1 (sigmoid) for binary models, K softmax channels including the background for multi-class
  models, R sigmoids for multi-label models. ``.npy`` needs only numpy and no pickle:
  ``np.load(path, allow_pickle=False)``.
* ``--overlays``: ``OUTPUT/overlays/<stem>.png``, the prediction's contour drawn on the image
  (:func:`s2mnet.inference.report.save_contour_overlay`; no ground truth needed).

Their paths are checked with the masks' rules before any work (:func:`s2mnet.data.mask_files.output_paths`)
and they are staged with the masks (:class:`~s2mnet.data.mask_files.MaskOutput`), so they appear together
or not at all. No torch here: the onnxruntime predictor (:mod:`s2mnet.deploy.onnx_predict`) uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s2mnet.data.mask_files import OVERLAYS_DIR, PROBABILITIES_DIR, MaskOutput, output_paths


class PredictionExtras:
    """The probability maps and overlays asked for, one per input, at checked paths.

    Args:
        inputs: the input images (their stems name the outputs), in prediction order.
        output_dir: ``s2m predict``'s output folder.
        overwrite: replace files of an earlier ``s2m predict`` (the masks' rule).
        probabilities: write ``probabilities/<stem>.npy``.
        overlays: write ``overlays/<stem>.png``.

    Raises:
        S2MError: an output that exists (see :func:`~s2mnet.data.mask_files.output_paths`).
    """

    def __init__(
        self,
        inputs: list[Path],
        output_dir: str | os.PathLike,
        overwrite: bool,
        probabilities: bool = False,
        overlays: bool = False,
    ) -> None:
        root = Path(output_dir)
        self.probabilities = (
            output_paths(inputs, root / PROBABILITIES_DIR, overwrite, ".npy") if probabilities else None
        )
        self.overlays = output_paths(inputs, root / OVERLAYS_DIR, overwrite) if overlays else None

    def write(
        self, staged: MaskOutput, position: int, probs: np.ndarray, image: np.ndarray, mask: np.ndarray
    ) -> None:
        """Stage the outputs of input number ``position``.

        Args:
            staged: the open output folder.
            position: the input's index in ``inputs``.
            probs: ``(C, H, W)`` probabilities at the image's size.
            image: the image as ``s2mnet.data.read_image`` returns it.
            mask: the predicted mask (``(H, W)`` map or ``(R, H, W)`` regions).
        """
        if self.probabilities is not None:
            staged.write_probabilities(self.probabilities[position], probs)
        if self.overlays is not None:
            from s2mnet.inference.report import save_contour_overlay  # matplotlib only when asked for

            target = self.overlays[position]
            save_contour_overlay(staged.path(target), image, mask, title=target.stem)
