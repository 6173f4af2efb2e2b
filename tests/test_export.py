"""ONNX export with dynamic H, W: one export, checked against PyTorch at two sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from s2mnet.export import ExportError, export_onnx, prepare_for_export
from s2mnet.models import create_model
from s2mnet.models.sstm import SSTM


@pytest.mark.slow
def test_onnx_round_trip_with_dynamic_height_and_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("s2mnet", num_classes=2, widths=[8, 8, 16, 16, 16], stem_width=8, k=8).eval()
    with torch.no_grad():  # non-trivial filters, so the exported spectral branch is really exercised
        for module in model.modules():
            if isinstance(module, SSTM):
                module.spectral.weight.normal_()
    path = tmp_path / "model.onnx"
    diffs = export_onnx(model, path, example_size=(48, 64), check_sizes=((48, 64), (33, 47)))
    assert path.is_file()
    assert set(diffs) == {"48x64", "33x47"}
    assert max(diffs.values()) <= 1e-4
    # The caller's model is left untouched (the export works on a matmul-form copy).
    assert all(m.spectral.impl == "fft" for m in model.modules() if isinstance(m, SSTM))


def test_official_flavour_is_refused_with_a_clear_message() -> None:
    model = create_model("s2mnet_official", widths=[8, 8, 8, 8, 8], stem_width=8, k=8)
    with pytest.raises(ExportError, match="'official' SSTM flavour"):
        prepare_for_export(model)
