"""Label modes (binary, multi-class, multi-label regions) through plan, data, loss, metrics and predictor."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.cli import main
from s2mnet.data.labels import (
    LABEL_PRESETS,
    display_map,
    expect_label_maps,
    label_mode,
    labels_from_regions,
    paint_order,
    parse_regions,
    read_target,
    regions_from_labels,
)
from s2mnet.engine.metrics import case_metrics
from s2mnet.engine.predictor import predict_probs, probs_to_mask
from s2mnet.engine.trainer import OUTSIDE_FOV_LOGIT, restrict_to_fov
from s2mnet.errors import LossInputError, S2MError
from s2mnet.losses import create_loss
from s2mnet.planning.planner import make_plan

BRATS = {"ET": [4], "TC": [1, 4], "WT": [1, 2, 4]}


def disk(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.uint8)


def brats_map(size: int, shift: int = 0) -> np.ndarray:
    """Nested BraTS-style label map: oedema 2 (WT only), core 1 inside it, enhancing 4 inside the core."""
    centre = (size / 2 + shift, size / 2 - shift)
    label_map = 2 * disk(size, centre, size * 0.35)
    label_map[disk(size, centre, size * 0.22) > 0] = 1
    label_map[disk(size, centre, size * 0.1) > 0] = 4
    return label_map.astype(np.uint8)


def tiny_fingerprint(num_classes: int = 1) -> dict:
    return {
        "descriptors": {"tubularity": {"median": 0.0}},
        "short_side": {"median": 64},
        "channels": {"colour": 4},
        "fov_share": 0.0,
        "num_classes": num_classes,
        "cases": 4,
        "train_cases": 3,
    }


# --- label maps ↔ regions ---------------------------------------------------------------------------


def test_brats_values_map_to_nested_regions_and_back() -> None:
    label_map = np.array([[0, 1, 2, 4]], np.uint8)
    regions = regions_from_labels(label_map, BRATS)
    assert regions.shape == (3, 1, 4)
    np.testing.assert_array_equal(regions[:, 0], [[0, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 1]])  # ET, TC, WT
    np.testing.assert_array_equal(labels_from_regions(regions, BRATS), label_map)
    full = brats_map(40)
    np.testing.assert_array_equal(labels_from_regions(regions_from_labels(full, BRATS), BRATS), full)


def test_paint_order_exists_for_nested_or_disjoint_regions_only() -> None:
    assert paint_order(BRATS) == [(2, 2), (1, 1), (0, 4)]  # WT → 2, TC → 1, ET → 4
    assert paint_order({"a": [1], "b": [2]}) is not None
    assert paint_order({"a": [1, 2], "b": [2, 3]}) is None
    with pytest.raises(S2MError, match="not nested"):
        labels_from_regions(np.zeros((2, 2, 2)), {"a": [1, 2], "b": [2, 3]})


def test_display_map_colours_by_first_region() -> None:
    masks = regions_from_labels(np.array([[0, 1, 2, 4]]), BRATS)
    np.testing.assert_array_equal(display_map(masks), [[0, 2, 3, 1]])


def test_parse_regions_accepts_presets_inline_json_and_files(tmp_path: Path) -> None:
    assert parse_regions("brats") == BRATS
    assert parse_regions("ET=4; TC=4,1; WT=1,2,4") == BRATS
    assert parse_regions(json.dumps(BRATS)) == BRATS
    path = tmp_path / "regions.json"
    path.write_text(json.dumps(BRATS))
    assert parse_regions(str(path)) == BRATS
    for bad, message in [("ET", "NAME=V1"), ("ET=x", "integers"), ("ET=300", "0..255"), ("a b=1", "name")]:
        with pytest.raises(S2MError, match=message):
            parse_regions(bad)
    with pytest.raises(S2MError, match="not found"):
        parse_regions(str(tmp_path / "missing.json"))


# --- plan -------------------------------------------------------------------------------------------


def test_plan_label_modes() -> None:
    assert make_plan(tiny_fingerprint(1))["label_mode"] == "binary"
    assert make_plan(tiny_fingerprint(4))["label_mode"] == "multiclass"
    plan = make_plan(tiny_fingerprint(5), overrides={"label_mode": "multilabel", "regions": "brats"})
    assert (plan["label_mode"], plan["num_classes"], plan["classes"]) == ("multilabel", 3, ["ET", "TC", "WT"])
    assert plan["regions"] == BRATS
    inferred = make_plan(tiny_fingerprint(5), overrides={"regions": "brats"})  # overlapping → multilabel
    assert inferred["label_mode"] == "multilabel"
    acdc = make_plan(tiny_fingerprint(4), overrides={"regions": "acdc"})
    assert (acdc["label_mode"], acdc["num_classes"]) == ("multiclass", 4)
    assert acdc["classes"] == ["background", "RV", "MYO", "LV"]
    assert label_mode({"num_classes": 3}) == "multiclass"  # plans written before label modes


def test_plan_label_mode_errors() -> None:
    with pytest.raises(S2MError, match="needs regions"):
        make_plan(tiny_fingerprint(5), overrides={"label_mode": "multilabel"})
    with pytest.raises(S2MError, match="disjoint"):
        make_plan(tiny_fingerprint(5), overrides={"label_mode": "multiclass", "regions": "brats"})
    with pytest.raises(S2MError, match="contradicts"):
        make_plan(tiny_fingerprint(5), overrides={"regions": "brats", "num_classes": 2})
    with pytest.raises(S2MError, match="unknown label mode"):
        make_plan(tiny_fingerprint(1), overrides={"label_mode": "ordinal"})


def test_presets_are_valid_plans() -> None:
    for name, preset in LABEL_PRESETS.items():
        plan = make_plan(tiny_fingerprint(31), overrides={"regions": name})
        assert plan["label_mode"] == preset["label_mode"], name


def test_read_target_in_each_mode(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 10, 20, 30]], np.uint8)).save(path)
    assert read_target(path, {"label_mode": "binary", "regions": {"tool": [10, 20, 30]}}).tolist() == [
        [0, 1, 1, 1]
    ]
    parts = {"label_mode": "multiclass", "regions": {"shaft": [10], "wrist": [20], "clasper": [30]}}
    assert read_target(path, parts).tolist() == [[0, 1, 2, 3]]
    regions = read_target(path, {"label_mode": "multilabel", "regions": {"a": [10, 20], "b": [20, 30]}})
    assert regions.tolist() == [[[0, 1, 1, 0]], [[0, 0, 1, 1]]]


def test_regions_name_stored_values_of_cases_with_a_label_map(tmp_path: Path) -> None:
    """NIfTI / nnU-Net cases decode values to class indices; regions still refer to the stored values."""
    from s2mnet.data.formats.labels import LabelMap
    from s2mnet.data.types import Case

    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1, 2, 4]], np.uint8)).save(path)
    labels = LabelMap(("background", "necrosis", "oedema", "enhancing"), values=(0, 1, 2, 4))
    case = Case("c", path, (path,), labels=labels)
    regions = read_target(case, {"label_mode": "multilabel", "regions": BRATS})
    np.testing.assert_array_equal(regions, regions_from_labels(np.array([[0, 1, 2, 4]]), BRATS))
    assert read_target(case, {"num_classes": 4}).tolist() == [[0, 1, 2, 3]]  # no regions: class indices


def test_brats_nifti_slices_give_nested_regions(tmp_path: Path) -> None:
    """BraTS' layout (case folder, modality volumes + ``_seg``) read through the NIfTI reader."""
    nib = pytest.importorskip("nibabel")
    from s2mnet.data import discover

    case_dir = tmp_path / "BraTS20_Training_001"
    case_dir.mkdir()
    seg = np.zeros((16, 16, 3), np.uint8)
    seg[..., 1] = brats_map(16)
    for modality in ("flair", "t1", "t1ce", "t2"):
        volume = np.random.default_rng(0).random((16, 16, 3), np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), case_dir / f"BraTS20_Training_001_{modality}.nii.gz")
    nib.save(nib.Nifti1Image(seg, np.eye(4)), case_dir / "BraTS20_Training_001_seg.nii.gz")
    middle = next(case for case in discover(tmp_path).cases if case.slice.index == 1)
    regions = read_target(middle, {"label_mode": "multilabel", "regions": BRATS})
    np.testing.assert_array_equal(regions, regions_from_labels(brats_map(16), BRATS))


def test_flags_asking_for_label_values_make_the_fingerprint_read_them() -> None:
    index = SimpleNamespace(num_classes=1)
    expect_label_maps(index, {"label_mode": "binary"})
    assert index.num_classes == 1
    expect_label_maps(index, {"regions": "brats"})
    assert index.num_classes == 2


# --- losses -----------------------------------------------------------------------------------------


def two_disk_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping disks as two regions, batch of 2 (the second sample has an empty region)."""
    first = np.stack([disk(32, (14, 14), 8), disk(32, (18, 18), 8)])
    second = np.stack([disk(32, (16, 16), 5), np.zeros((32, 32), np.uint8)])
    target = torch.from_numpy(np.stack([first, second])).float()
    logits = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0)) * 2
    return logits, target


@pytest.mark.parametrize("name", ["masl", "masl_fixed", "dicece"])
def test_multilabel_loss_is_the_mean_of_per_region_binary_losses(name: str) -> None:
    logits, target = two_disk_batch()
    multilabel = create_loss(name, num_classes=2, multilabel=True)
    binary = create_loss(name, num_classes=1)
    per_region = [binary(logits[:, c : c + 1], target[:, c : c + 1]) for c in range(2)]
    torch.testing.assert_close(multilabel(logits, target), torch.stack(per_region).mean())


def test_multilabel_masl_trains_each_region_and_checks_shapes() -> None:
    logits, target = two_disk_batch()
    logits.requires_grad_(True)
    loss = create_loss("masl", num_classes=2, multilabel=True)
    loss(logits, target).backward()
    assert logits.grad is not None and bool((logits.grad[:, 1].abs().sum((-1, -2)) > 0).all())
    with pytest.raises(LossInputError, match="multi-label"):
        loss(logits, target[:, :1])
    with pytest.raises(LossInputError, match=r"\[0, 1\]"):
        loss(logits, target * 2)


# --- inference, metrics, FOV ------------------------------------------------------------------------


class FixedLogits(torch.nn.Module):
    """Stand-in model: channel 0 logit +2 everywhere, channel 1 logit +1."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.stack([torch.full((b, h, w), 2.0), torch.full((b, h, w), 1.0)], dim=1)


def test_multilabel_inference_uses_one_sigmoid_per_region() -> None:
    image = torch.zeros(3, 8, 8)
    probs = predict_probs(FixedLogits(), image, {"mode": "resize", "size": 8, "label_mode": "multilabel"})
    torch.testing.assert_close(probs[:, 0, 0], torch.sigmoid(torch.tensor([2.0, 1.0])))
    assert probs_to_mask(probs, multilabel=True).shape == (2, 8, 8)
    assert probs_to_mask(probs, multilabel=True).min() == 1  # both regions above 0.5: overlap allowed
    softmax = predict_probs(FixedLogits(), image, {"mode": "resize", "size": 8, "num_classes": 2})
    torch.testing.assert_close(softmax.sum(0), torch.ones(8, 8))


def test_metrics_per_region_on_analytic_shapes() -> None:
    truth = np.zeros((2, 20, 20), np.uint8)
    truth[0, 5:15, 5:15] = 1
    truth[1, 0:10, 0:10] = 1
    pred = truth.copy()
    pred[1] = 0
    pred[1, 0:10, 5:15] = 1  # shifted by 5 columns: overlap 50 of 100 + 100 → Dice 0.5, IoU 1/3
    result = case_metrics(pred, truth, regions=["A", "B"])
    assert set(result["per_class"]) == {"A", "B"}
    assert result["per_class"]["A"]["dice"] == pytest.approx(1.0)
    assert result["per_class"]["A"]["hd95"] == pytest.approx(0.0)
    assert result["per_class"]["B"]["dice"] == pytest.approx(0.5)
    assert result["per_class"]["B"]["iou"] == pytest.approx(1 / 3)
    assert result["per_class"]["B"]["hd95"] == pytest.approx(5.0)
    assert result["dice"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="region names"):
        case_metrics(pred, truth, regions=["A"])


def test_restrict_to_fov_multilabel_makes_every_region_absent_outside() -> None:
    logits = torch.zeros(1, 3, 4, 4)
    masks = torch.ones(1, 3, 4, 4)
    fov = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    fov[..., :2] = True
    out_logits, out_masks = restrict_to_fov(logits, masks, fov)
    assert bool((out_logits[..., 2:] == -OUTSIDE_FOV_LOGIT).all()) and bool((out_logits[..., :2] == 0).all())
    assert out_masks[..., 2:].sum() == 0 and out_masks[..., :2].sum() == 3 * 4 * 2


# --- end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brats_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 40×40 colour images with BraTS-valued PNG label maps {0, 1, 2, 4} (nested regions)."""
    root = tmp_path_factory.mktemp("brats_like")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        label_map = brats_map(40, shift=index % 4 - 2)
        shade = np.select([label_map == 4, label_map == 1, label_map == 2], [230, 170, 110], 30)
        image = np.clip(shade[..., None] + rng.normal(0, 8, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"case{index}.png")
        Image.fromarray(label_map).save(root / "masks" / f"case{index}.png")
    return root


@pytest.mark.slow
def test_multilabel_train_evaluate_predict_end_to_end(brats_like: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--device", "cpu", "--quiet"]
    flags = ["--regions", "brats", "--size", "32", "--epochs", "1", "--batch-size", "4"]
    flags += ["--samples-per-epoch", "8", "--mode", "resize", "--workers", "0", "--no-tensorboard"]
    assert main(["train", "--data", str(brats_like), "--out", str(run), *flags, *common]) == 0
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["label_mode"], plan["regions"], plan["num_classes"]) == ("multilabel", BRATS, 3)
    assert json.loads((run / "run.json").read_text())["model"]["num_classes"] == 3

    report = tmp_path / "metrics.json"
    assert (
        main(["evaluate", "--run", str(run), "--split", "all", "--json", str(report), "--device", "cpu"]) == 0
    )
    metrics = json.loads(report.read_text())
    assert metrics["label_mode"] == "multilabel" and set(metrics["per_class"]) == {"ET", "TC", "WT"}
    for values in metrics["per_class"].values():
        assert 0.0 <= values["dice"] <= 1.0 and "hd95" in values
    assert metrics["dice"] == pytest.approx(np.mean([v["dice"] for v in metrics["per_class"].values()]))
    assert "| WT |" in (run / "eval_all" / "report.md").read_text()

    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                "--input",
                str(brats_like / "images"),
                "--output",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for region in BRATS:
        mask = np.asarray(Image.open(out / region / "case0.png"))
        assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 255}
    label_map = np.asarray(Image.open(out / "case0.png"))
    assert set(np.unique(label_map)) <= {0, 1, 2, 4}
