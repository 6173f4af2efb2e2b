"""``s2m evaluate --pred DIR --truth DIR``: pairing, label handling, units, outputs all-or-nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2mnet.cli import main
from s2mnet.data.mask_pairs import pair_key
from s2mnet.errors import DataError
from s2mnet.inference.score_folder import score_folders


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def square(top: int, left: int, side: int = 8, size: int = 24, value: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + side, left : left + side] = value
    return mask


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """Our masks ({0, 255}, ``case_1.png``) against nnU-Net-style truths ({0, 1}, ``case_001_seg.png``)."""
    save(tmp_path / "pred/case_1.png", square(4, 4, value=255))  # exact
    save(tmp_path / "pred/case_2.png", square(4, 8, value=255))  # shifted by 4 columns
    save(tmp_path / "pred/case_3.png", np.zeros((24, 24)))  # empty truth, empty prediction
    for index, mask in ((1, square(4, 4)), (2, square(4, 4)), (3, np.zeros((24, 24)))):
        save(tmp_path / f"truth/case_{index:03d}_seg.png", mask)
        save(tmp_path / f"images/case_{index:03d}_0000.png", np.full((24, 24), 90) + 100 * mask)
    return {"pred": tmp_path / "pred", "truth": tmp_path / "truth", "images": tmp_path / "images"}


def test_pair_keys_ignore_role_words_channel_suffixes_and_leading_zeros() -> None:
    keys = {pair_key(Path(name)) for name in ("case_7.png", "case_007_seg.png", "case_007_0000.png")}
    assert keys == {pair_key(Path("Case_07_mask.tif"))} == {"case_7"}
    assert pair_key(Path("brain_12.nii.gz")) == pair_key(Path("brain_012_0000.nii.gz"))


def test_scores_follow_the_hand_computed_cases(folders, tmp_path, capsys) -> None:
    out = tmp_path / "scores"
    args = ["evaluate", "--pred", str(folders["pred"]), "--truth", str(folders["truth"])]
    assert main([*args, "--images", str(folders["images"]), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HD95 and ASSD in px" in printed and "trivial baselines" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    dice = {row["case_id"]: row["dice"] for row in metrics["cases"]}
    assert dice == pytest.approx({"case_1": 1.0, "case_2": 0.5, "case_3": 1.0})
    assert metrics["dice"] == pytest.approx(2.5 / 3) and metrics["n_cases"] == 3
    assert metrics["distance_unit"] == "px" and metrics["num_classes"] == 1
    assert metrics["cases"][1]["hd95"] == pytest.approx(4.0)
    assert metrics["trivial"]["dice_all_empty"] == pytest.approx(1 / 3)
    assert metrics["trivial"]["dice_all_foreground"] == pytest.approx(2 * (2 * 64 / (64 + 576)) / 3)
    assert "HD95 and ASSD in pixels" in (out / "report.md").read_text()
    assert len((out / "cases.csv").read_text().splitlines()) == 4
    assert {p.name for p in (out / "overlays").glob("*.png")} >= {"worst1_case_2.png"}
    assert not list(tmp_path.glob(".scores.*"))


def test_class_maps_are_scored_per_class(tmp_path) -> None:
    truth = square(2, 2) + 2 * square(12, 12)
    pred = square(2, 2) + 2 * square(12, 16)
    save(tmp_path / "pred/a.png", pred)
    save(tmp_path / "truth/a.png", truth)
    metrics = score_folders(tmp_path / "pred", tmp_path / "truth", out_dir=tmp_path / "out")
    assert metrics["num_classes"] == 3
    assert metrics["per_class"]["1"]["dice"] == pytest.approx(1.0)
    assert metrics["per_class"]["2"]["dice"] == pytest.approx(0.5)
    assert metrics["dice"] == pytest.approx(0.75)


def test_nifti_volumes_are_scored_in_millimetres(tmp_path) -> None:
    nib = pytest.importorskip("nibabel")
    truth = np.zeros((10, 10, 6), np.uint8)
    truth[2:5, 2:5, 1:4] = 1
    pred = np.roll(truth, 2, axis=2)  # two slices further along z
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    for folder, volume in (("pred", pred), ("truth", truth)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(volume, affine), tmp_path / folder / "brain_001.nii.gz")
    metrics = score_folders(tmp_path / "pred", tmp_path / "truth", out_dir=tmp_path / "out")
    assert metrics["distance_unit"] == "mm" and metrics["per"] == "volume"
    assert metrics["dice"] == pytest.approx(1 / 3)
    assert metrics["hd95"] == pytest.approx(6.0)  # 2 slices × 3 mm
    assert "millimetres" in (tmp_path / "out/report.md").read_text()


def one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_inputs_are_one_line(folders, tmp_path, capsys) -> None:
    pred, truth = str(folders["pred"]), str(folders["truth"])
    assert "--pred and --truth go together" in one_error(capsys, ["evaluate", "--pred", pred])
    save(tmp_path / "pred/other_9.png", np.zeros((24, 24)))
    line = one_error(capsys, ["evaluate", "--pred", pred, "--truth", truth])
    assert "3 of 4 predictions pair" in line and "other_9.png" in line
    (tmp_path / "pred/other_9.png").unlink()
    save(tmp_path / "pred/case_2.png", np.zeros((20, 24)))
    line = one_error(capsys, ["evaluate", "--pred", pred, "--truth", truth, "--output", str(tmp_path / "o")])
    assert "case_2.png: size 24x20 differs from its truth" in line
    assert not (tmp_path / "o").exists()
    (tmp_path / "folder.json").mkdir()
    line = one_error(
        capsys, ["evaluate", "--pred", pred, "--truth", truth, "--json", str(tmp_path / "folder.json")]
    )
    assert "is a folder" in line


def test_outputs_are_all_or_nothing_and_never_replace_foreign_files(folders, tmp_path, capsys, monkeypatch):
    pred, truth = str(folders["pred"]), str(folders["truth"])
    out, notes = tmp_path / "out", tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    base = ["evaluate", "--pred", pred, "--truth", truth, "--output", str(out)]
    assert "already exists; nothing was changed" in one_error(capsys, [*base, "--json", str(notes)])
    assert notes.read_text() == '{"mine": 1}' and not out.exists()
    assert main([*base, "--json", str(tmp_path / "m.json")]) == 0
    assert main([*base, "--json", str(tmp_path / "m.json"), "--overwrite"]) == 0  # replaced on request
    before = (out / "metrics.json").read_text()

    from s2mnet.inference import score_folder

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(score_folder, "write_report", broken)
    with pytest.raises(OSError):
        score_folders(pred, truth, out_dir=out, overwrite=True)
    assert (out / "metrics.json").read_text() == before and (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert "not empty" in one_error(
        capsys, ["evaluate", "--pred", pred, "--truth", truth, "--output", str(folders["images"])]
    )


def test_metrics_hold_paths_relative_to_the_working_folder(folders, monkeypatch) -> None:
    monkeypatch.chdir(folders["pred"].parent)
    metrics = score_folders(folders["pred"].resolve(), folders["truth"].resolve())
    assert (metrics["pred"], metrics["truth"]) == (folders["pred"].name, folders["truth"].name)


def test_unpaired_truths_are_a_warning(folders) -> None:
    save(folders["truth"] / "case_004_seg.png", square(1, 1))
    metrics = score_folders(folders["pred"], folders["truth"])
    assert metrics["n_cases"] == 3 and any("without a prediction" in line for line in metrics["warnings"])
    assert (folders["pred"].parent / "pred_eval" / "metrics.json").is_file()
    (folders["pred"].parent / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no mask files"):
        score_folders(folders["pred"].parent / "empty", folders["truth"])
