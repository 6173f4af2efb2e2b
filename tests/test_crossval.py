"""Cross-validation: folds (data/folds.py), mask strata, the fold ensemble, and ``s2m train --folds K``
with resume, out-of-fold evaluation, ensemble prediction and export, and the nnU-Net conversion."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2mnet.cli import main
from s2mnet.data.folds import fold_run_splits, folds_from_list, make_folds, mask_strata, name_strata
from s2mnet.data.types import Case, DatasetIndex
from s2mnet.engine.ensemble import FoldEnsemble
from s2mnet.errors import DataError


def index_of(names: list[str], groups: dict[str, str] | None = None, test: list[str] = ()) -> DatasetIndex:
    """Fake cases named ``names`` (``benign (3)`` → id ``benign (3)``, image ``benign (3).png``)."""
    cases = [
        Case(name, Path(f"/d/{name}.png"), (Path(f"/d/{name}_mask.png"),), group=(groups or {}).get(name))
        for name in names
    ]
    known = {"train": [n for n in names if n not in test], "val": [], "test": list(test)} if test else None
    return DatasetIndex(Path("/d"), cases, "images-masks", known_split=known)


BUSI_LIKE = [f"benign ({i})" for i in range(10)] + [f"malignant ({i})" for i in range(5)]
BUSI_LIKE += [f"normal ({i})" for i in range(5)]


# --- folds ------------------------------------------------------------------------------------------


def test_folds_keep_the_class_proportions_in_every_fold() -> None:
    """10 benign, 5 malignant, 5 normal in 5 folds: each held-out fold has exactly 2 / 1 / 1."""
    folds = make_folds(index_of(BUSI_LIKE), 5, seed=3)
    assert folds["stratified_by"] == "class in the file names"
    for part in folds["folds"]:
        counts = Counter(name.split(" ")[0] for name in part["val"])
        assert counts == {"benign": 2, "malignant": 1, "normal": 1}
        assert sorted(part["train"] + part["val"]) == sorted(BUSI_LIKE)
    held_out = [i for part in folds["folds"] for i in part["val"]]
    assert sorted(held_out) == sorted(BUSI_LIKE)  # every case held out exactly once


def test_folds_are_deterministic_and_depend_on_the_seed() -> None:
    index = index_of(BUSI_LIKE)
    assert make_folds(index, 5, seed=1) == make_folds(index, 5, seed=1)
    assert make_folds(index, 5, seed=1)["folds"] != make_folds(index, 5, seed=2)["folds"]


def test_groups_stay_in_one_fold() -> None:
    names = [f"vol{v}_slice{s}" for v in range(6) for s in range(3)]
    groups = {name: name.split("_")[0] for name in names}
    folds = make_folds(index_of(names, groups), 3, seed=0, strata={}, stratified_by="none")
    for part in folds["folds"]:
        volumes = {groups[i] for i in part["val"]}
        assert len(part["val"]) == 6 and len(volumes) == 2  # two whole volumes per fold
        assert not volumes & {groups[i] for i in part["train"]}


def test_published_test_split_is_held_out() -> None:
    names = [f"case{i}" for i in range(10)]
    folds = make_folds(index_of(names, test=["case8", "case9"]), 2, seed=0)
    assert folds["test"] == ["case8", "case9"]
    for part in folds["folds"]:
        assert not {"case8", "case9"} & set(part["train"] + part["val"])
        assert len(part["val"]) == 4


def test_class_smaller_than_k_and_k_below_two_are_one_line_errors() -> None:
    names = [f"benign ({i})" for i in range(6)] + [f"malignant ({i})" for i in range(3)]
    with pytest.raises(DataError, match=r"--folds 4 is more than class 'malignant' has cases \(3\)"):
        make_folds(index_of(names), 4)
    with pytest.raises(DataError, match="at least 2 folds"):
        make_folds(index_of(names), 1)


def test_name_strata_only_when_names_carry_classes() -> None:
    assert name_strata(index_of(BUSI_LIKE))["malignant (2)"] == "malignant"
    assert name_strata(index_of([f"ISIC_{i:07d}" for i in range(8)])) is None


def test_fold_run_splits_test_is_the_held_out_fold() -> None:
    index = index_of(BUSI_LIKE)
    folds = make_folds(index, 5, seed=0)
    split = fold_run_splits(folds, 2, index, seed=0)
    assert split["test"] == folds["folds"][2]["val"]
    assert sorted(split["train"] + split["val"]) == sorted(folds["folds"][2]["train"])
    assert not set(split["train"]) & set(split["val"])
    assert Counter(i.split(" ")[0] for i in split["val"]) == {"benign": 2, "malignant": 1, "normal": 1}


def test_folds_from_list_checks_the_nnunet_shape() -> None:
    assert folds_from_list([{"train": ["a"], "val": ["b"]}], "f") == [{"train": ["a"], "val": ["b"]}]
    with pytest.raises(DataError, match="f: expected a list"):
        folds_from_list({"train": ["a"]}, "f")


def _mask_dataset(root: Path, fractions: list[float]) -> DatasetIndex:
    """One 10x10 case per fraction: the first ``round(100 f)`` pixels of its mask are foreground."""
    cases = []
    for number, fraction in enumerate(fractions):
        mask = np.zeros(100, np.uint8)
        mask[: round(100 * fraction)] = 255
        path = root / f"m{number}.png"
        Image.fromarray(mask.reshape(10, 10)).save(path)
        cases.append(Case(f"c{number}", root / f"c{number}.png", (path,)))
    return DatasetIndex(root, cases, "images-masks")


def test_mask_strata_split_at_the_median_and_merge_small_bins(tmp_path: Path) -> None:
    """Fractions 0, 0, 0, .1, .2, .3, .4: median of the non-zero ones .25 → empty 3, small 2, large 2;
    with K = 3 the small bin (2 < 3) merges into its neighbour, large."""
    index = _mask_dataset(tmp_path, [0, 0, 0, 0.1, 0.2, 0.3, 0.4])
    plan = {"num_classes": 1, "label_mode": "binary"}
    strata = mask_strata(index, 2, plan)
    assert Counter(strata.values()) == {"empty": 3, "small": 2, "large": 2}
    assert strata["c3"] == "small" and strata["c6"] == "large"
    merged = mask_strata(index, 3, plan)
    assert Counter(merged.values()) == {"empty": 3, "small|large": 4}


def test_mask_strata_of_class_maps_are_the_classes_present(tmp_path: Path) -> None:
    cases = []
    for number, values in enumerate([(0,), (1,), (1,), (1, 2), (1, 2), (2,)]):
        mask = np.zeros((4, 4), np.uint8)
        for position, value in enumerate(values):
            mask[position] = value
        Image.fromarray(mask).save(tmp_path / f"m{number}.png")
        cases.append(Case(f"c{number}", tmp_path / f"c{number}.png", (tmp_path / f"m{number}.png",)))
    index = DatasetIndex(tmp_path, cases, "images-masks", num_classes=3)
    strata = mask_strata(index, 2, {"num_classes": 3, "label_mode": "multiclass"})
    # none (1 case) merges into 1, then 2 (1 case) into 1+2: every stratum holds at least K = 2
    assert strata == {
        "c0": "none|1",
        "c1": "none|1",
        "c2": "none|1",
        "c3": "2|1+2",
        "c4": "2|1+2",
        "c5": "2|1+2",
    }


# --- the ensemble -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, sigmoid", [(1, True), (3, False), (2, True)])
def test_ensemble_output_gives_back_the_mean_probabilities(channels: int, sigmoid: bool) -> None:
    torch.manual_seed(0)
    models = [torch.nn.Conv2d(3, channels, 3, padding=1) for _ in range(3)]
    ensemble = FoldEnsemble(models, sigmoid=sigmoid).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = ensemble(x)
        if sigmoid:
            expected = torch.stack([torch.sigmoid(m(x)) for m in models]).mean(0)
            got = torch.sigmoid(out)
        else:
            expected = torch.stack([torch.softmax(m(x), 1) for m in models]).mean(0)
            got = torch.softmax(out, 1)
    assert out.shape == (2, channels, 8, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


# --- s2m train --folds K and what uses its run --------------------------------------------------------

TINY_FLAGS = ["--device", "cpu", "--size", "32", "--epochs", "1", "--batch-size", "4"]
TINY_FLAGS += ["--samples-per-epoch", "4", "--model", "unet", "--model-arg", "base_width=4"]
TINY_FLAGS += ["--no-tensorboard", "--quiet", "--workers", "0"]


@pytest.fixture(scope="module")
def cv_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 training images and a published test split of 2 (folder names train/ and test/)."""
    from s2mnet.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("cvdata")
    make_synthetic_dataset(root / "train", n=6, size=32, seed=0)
    make_synthetic_dataset(root / "test", n=2, size=32, seed=1)
    return root


@pytest.fixture(scope="module")
def cv_run(cv_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cvruns") / "cv"
    assert main(["train", "--data", str(cv_data), "--out", str(out), "--folds", "2", *TINY_FLAGS]) == 0
    return out


@pytest.mark.slow
def test_train_folds_writes_manifest_list_splits_and_complete_fold_runs(cv_run: Path) -> None:
    manifest = json.loads((cv_run / "cv.json").read_text())
    splits = json.loads((cv_run / "splits.json").read_text())
    assert manifest["folds"] == 2 and manifest["fold_dirs"] == ["fold_0", "fold_1"]
    assert manifest["test"] == ["test/synth_000", "test/synth_001"]
    assert manifest["stratified_by"].startswith("foreground in the masks")
    assert "budget" in manifest and manifest["train_config"]["model"] == "unet"
    assert isinstance(splits, list) and len(splits) == 2
    assert sorted(splits[0]["val"] + splits[1]["val"]) == [f"train/synth_{i:03d}" for i in range(6)]
    for fold, part in enumerate(splits):
        run = json.loads((cv_run / f"fold_{fold}" / "run.json").read_text())
        assert run["status"] == "finished"
        fold_split = json.loads((cv_run / f"fold_{fold}" / "splits.json").read_text())
        assert fold_split["test"] == part["val"]
        assert (cv_run / f"fold_{fold}" / "best.safetensors").is_file()


@pytest.mark.slow
def test_evaluate_cv_is_out_of_fold_over_every_case(cv_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--run", str(cv_run), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "predicting all empty" in printed and "ensemble of the folds" in printed
    metrics = json.loads((cv_run / "eval_cv" / "metrics.json").read_text())
    splits = json.loads((cv_run / "splits.json").read_text())
    assert metrics["n_cases"] == 6 and metrics["test"]["n_cases"] == 2
    fold_of = {case["case_id"]: case["fold"] for case in metrics["cases"]}
    assert fold_of == {i: k for k, part in enumerate(splits) for i in part["val"]}
    assert metrics["dice"] == pytest.approx(np.mean([case["dice"] for case in metrics["cases"]]))
    assert set(metrics["trivial"]) == {"dice_all_empty", "dice_all_foreground"}
    assert (cv_run / "eval_cv" / "cases.csv").read_text().startswith("fold,case_id,dice")
    assert main(["evaluate", "--run", str(cv_run), "--split", "val"]) == 2  # out of fold only


@pytest.mark.slow
def test_predict_and_export_the_ensemble(cv_run: Path, cv_data: Path, tmp_path: Path) -> None:
    import s2mnet
    from s2mnet.deploy.onnx_predict import load_onnx_model

    images = cv_data / "test" / "images"
    assert main(["predict", "--run", str(cv_run), str(images), "--output", str(tmp_path / "p")]) == 0
    assert (
        main(["predict", "--run", str(cv_run), "--folds", "1", str(images), "--output", str(tmp_path / "q")])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["synth_000.png", "synth_001.png"]
    onnx = tmp_path / "ens.onnx"
    assert main(["export", "--run", str(cv_run), "--output", str(onnx)]) == 0
    ensemble = s2mnet.load(str(cv_run))
    assert isinstance(ensemble, FoldEnsemble) and len(ensemble.models) == 2
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        expected = ensemble(x).numpy()
    got = load_onnx_model(onnx).logits(x.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert main(["predict", "--model", str(onnx), str(images), "--output", str(tmp_path / "o")]) == 0
    for name in ("synth_000.png", "synth_001.png"):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "o" / name)), np.asarray(Image.open(tmp_path / "p" / name))
        )


@pytest.mark.slow
def test_fold_flag_trains_one_fold_and_resume_trains_the_rest(cv_data: Path, tmp_path: Path) -> None:
    """--fold 1 trains fold 1 alone; --resume then starts the missing fold 0 and leaves fold 1 as it was."""
    out = tmp_path / "one"
    flags = ["train", "--data", str(cv_data), "--out", str(out), "--folds", "2", "--fold", "1", *TINY_FLAGS]
    assert main(flags) == 0
    assert (out / "fold_1" / "run.json").is_file() and not (out / "fold_0").exists()
    assert main(flags) == 2  # fold 1 exists: refused without --overwrite
    before = (out / "fold_1" / "best.safetensors").read_bytes()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "fold_0" / "run.json").read_text())["status"] == "finished"
    assert (out / "fold_1" / "best.safetensors").read_bytes() == before
    assert main(["train", "--resume", str(out)]) == 2  # nothing left to resume


def test_nnunet_convert_reuses_the_folds(cv_data: Path, tmp_path: Path) -> None:
    from s2mnet.nnunet.convert import convert_dataset

    run = tmp_path / "cv"
    run.mkdir()
    folds = [{"train": ["train/synth_000"], "val": ["train/synth_001"]}]
    folds.append({"train": ["train/synth_001"], "val": ["train/synth_000"]})
    (run / "splits.json").write_text(json.dumps(folds))
    (run / "cv.json").write_text(json.dumps({"folds": 2, "test": ["test/synth_000"], "source": "2 folds"}))
    result = convert_dataset(cv_data, 9, out=tmp_path / "raw", splits_file=run)
    written = json.loads((result["folder"] / "splits_final.json").read_text())
    assert written == [
        {"train": ["train_synth_000"], "val": ["train_synth_001"]},
        {"train": ["train_synth_001"], "val": ["train_synth_000"]},
    ]
    assert result["test"] == 1 and result["folds"] == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--folds", "1"], "--folds 1: cross-validation needs 2 to 100 folds"),
        (["--fold", "1"], "--fold 1: needs --folds K"),
        (["--folds", "2", "--fold", "2"], "--fold 2: the folds of --folds 2 are 0..1"),
        (["--folds", "2", "--splits", "SPLITS"], "--folds and --splits cannot be combined"),
        (["--folds", "7"], "--folds 7 needs at least 7 cases to split; there are 6"),
    ],
)
def test_bad_cv_flags_are_one_line_errors(
    flags: list[str], message: str, cv_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    splits = tmp_path / "s.json"
    splits.write_text("{}")
    flags = [str(splits) if flag == "SPLITS" else flag for flag in flags]
    args = ["train", "--data", str(cv_data), "--out", str(tmp_path / "r"), "--device", "cpu", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_folds_that_disagree_are_not_ensembled(cv_run: Path, tmp_path: Path) -> None:
    from s2mnet.engine.checkpoint import load_ensemble
    from s2mnet.errors import RunError

    copy = tmp_path / "cv"
    shutil.copytree(cv_run, copy, ignore=shutil.ignore_patterns("eval_cv*"))
    config = json.loads((copy / "fold_1" / "run.json").read_text())
    config["plan"]["size"] = 64
    (copy / "fold_1" / "run.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="fold_1: its plan differs from fold_0's"):
        load_ensemble(copy)
    assert len(load_ensemble(copy, folds=[0])[0].models) == 1


@pytest.mark.parametrize("command", ["predict", "export"])
def test_folds_flag_needs_a_cross_validation_run(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    out = ["--output", str(tmp_path / ("o" if command == "predict" else "m.onnx"))]
    args = [command, "--run", str(run), "--folds", "0", *out, *([str(run)] if command == "predict" else [])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --folds 0: needs --run with a cross-validation run (s2m train --folds K)"


def test_the_cpu_default_budget_is_per_fold_and_an_explicit_budget_is_the_whole_commands() -> None:
    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.crossval import _budget_division

    default = _budget_division(TrainConfig(data="d", out="o", device="cpu"), 5)
    assert default["total_s"] == 5 * 15 * 60 and default["per_fold_s"] == 15 * 60
    assert "15 min per fold" in default["text"]
    given = _budget_division(TrainConfig(data="d", out="o", device="cpu", budget_s=3600), 5)
    assert given["total_s"] == 3600 and given["per_fold_s"] == 720 and "per fold" not in given["text"]
    one_fold = _budget_division(TrainConfig(data="d", out="o", device="cpu", budget_s=3600), 1)
    assert one_fold["per_fold_s"] == 3600
