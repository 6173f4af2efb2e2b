"""``s2m bench``: statistics by hand, spectral shares with known answers, efficiency, ablation + resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from s2mnet.bench import ablation, efficiency, spectral
from s2mnet.bench.stats import bonferroni, fit_exponent, mean_sd, paired_tests
from s2mnet.cli import main
from s2mnet.errors import S2MError

TINY_PLAN = {"epochs": 1, "size": 32, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n=10, size=32, seed=0)


@pytest.fixture(scope="module")
def tiny_ablation(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ablation")
    config = ablation.AblationConfig(
        data=tiny_data, out=out, variants=["full", "no_sstm"], seeds=[1, 2], plan=TINY_PLAN, device="cpu"
    )
    return out, ablation.run_ablation(config, say=lambda _: None)


# --- statistics -----------------------------------------------------------------------------------


def test_exponent_fit_is_exact_on_a_power_law() -> None:
    pixels = [128**2, 256**2, 512**2, 1024**2]
    assert fit_exponent(pixels, [3.0 * p**1.5 for p in pixels]) == pytest.approx(1.5, abs=1e-12)
    assert fit_exponent(pixels, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert fit_exponent([1, 2], [1.0, None]) is None  # a skipped cell leaves one point


def test_paired_tests_by_hand() -> None:
    # differences 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) on 3 degrees of freedom
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    result = paired_tests(a, b)
    assert result["n"] == 4 and result["mean_diff"] == pytest.approx(2.5)
    assert result["t_p"] == pytest.approx(2 * scipy_stats.t.sf(t, 3), rel=1e-9)
    # all four signed ranks positive: exact two-sided p = 2 · (1 / 2⁴)
    assert result["wilcoxon_p"] == pytest.approx(0.125)
    assert paired_tests([1.0], [0.0])["t_p"] is None  # one pair: undefined
    assert paired_tests([1.0, 2.0], [1.0, 2.0])["wilcoxon_p"] is None  # no difference: undefined


def test_bonferroni_and_mean_sd() -> None:
    assert bonferroni(0.01, 3) == pytest.approx(0.03)
    assert bonferroni(0.5, 3) == 1.0
    assert bonferroni(None, 3) is None
    with pytest.raises(ValueError):
        bonferroni(0.1, 0)
    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_summary_of_hand_made_results() -> None:
    def record(variant: str, seed: int, dice: list[float]) -> dict:
        cases = {f"c{i}": {"dice": d, "hd95": 1.0} for i, d in enumerate(dice)}
        return {"variant": variant, "seed": seed, "dice": float(np.mean(dice)), "hd95": 1.0, "cases": cases}

    records = [
        record("full", 1, [0.8, 0.9, 0.7]),
        record("full", 2, [0.8, 0.8, 0.8]),
        record("no_sstm", 1, [0.6, 0.9, 0.5]),
        record("no_sstm", 2, [0.7, 0.8, 0.6]),
        record("k16", 1, [0.8, 0.9, 0.7]),
    ]
    summary = ablation.summarise_results(records)
    assert summary["comparisons"] == 2
    rows = {row["variant"]: row for row in summary["variants"]}
    assert rows["full"]["dice_mean"] == pytest.approx(0.8)
    by_case = rows["no_sstm"]["vs_reference"]["by_case"]
    # per-case Dice averaged over the 2 shared seeds: variant (0.65, 0.85, 0.55) vs full (0.8, 0.85, 0.75)
    expected = scipy_stats.ttest_rel([0.65, 0.85, 0.55], [0.8, 0.85, 0.75]).pvalue
    assert by_case["t_p"] == pytest.approx(expected)
    assert by_case["t_p_bonf"] == pytest.approx(min(1.0, 2 * expected))
    assert rows["k16"]["vs_reference"]["by_seed"]["n"] == 1  # only seed 1 is shared


# --- spectral -------------------------------------------------------------------------------------


def test_constant_image_has_all_energy_in_the_centre() -> None:
    image = torch.full((1, 3, 32, 32), 0.7)
    assert spectral.energy_shares(image, [1, 8, 32]).tolist() == [[1.0, 1.0, 1.0]]
    assert math.isnan(spectral.energy_shares(image, [8], include_dc=False).item())  # no energy left


def test_cosine_energy_splits_at_the_block_edge() -> None:
    """cos(2π·4x/32) has its energy at frequencies ±4; the K×K block holds −K/2 … K/2−1."""
    x = torch.arange(32, dtype=torch.float64)
    image = torch.cos(2 * math.pi * 4 * x / 32).expand(32, 32)[None]
    shares = spectral.energy_shares(image, [4, 8, 10, 64]).squeeze(0).tolist()
    assert shares == pytest.approx([0.0, 0.5, 1.0, 1.0], abs=1e-12)


def test_recommend_k() -> None:
    assert spectral.recommend_k([8, 16, 32], [0.5, 0.95, 0.99]) == 16
    assert spectral.recommend_k([8, 16], [0.5, 0.6]) is None


def test_spectral_on_images_and_sstm_features(tiny_data: Path, tiny_ablation: tuple, tmp_path: Path) -> None:
    run = tiny_ablation[0] / "runs" / "full_s1"
    flags = ["--size", "32", "--ks", "4,8,16", "--device", "cpu", "--limit", "3", "--out", str(tmp_path)]
    code = main(["bench", "spectral", "--data", str(tiny_data), "--run", str(run), *flags])
    assert code == 0
    result = json.loads((tmp_path / "spectral.json").read_text())
    assert result["n_images"] == 3 and set(result["images"]) == {"include", "exclude"}
    stages = result["features"]["include"]
    assert [s["stage"] for s in stages] == [1, 2, 3, 4, 5]
    assert stages[0]["n"] == 3 * 24  # images × channels of stage 1
    assert stages[-1]["mean"] == pytest.approx([1.0, 1.0, 1.0])  # a 1×1 map: everything is in the block
    assert (tmp_path / "spectral.md").read_text().count("stage 1") == 2
    assert (tmp_path / "spectral.png").stat().st_size > 0


# --- efficiency -----------------------------------------------------------------------------------


def test_fft_flops_by_hand() -> None:
    # rfft2 of 4×4: 4 real row FFTs (2.5·4·2 each) + 3 complex column FFTs (5·4·2 each) = 80 + 120
    assert efficiency.fft_flops(4, 4) == 200.0
    conv = torch.nn.Conv2d(2, 3, 1, bias=False)
    counted, fft, attention = efficiency.count_flops(conv, torch.zeros(1, 2, 5, 5))
    assert (counted, fft, attention) == (2 * 2 * 3 * 25, 0.0, 0.0)


def test_efficiency_tables_ratios_and_plot(tmp_path: Path) -> None:
    result = efficiency.run_efficiency(
        tmp_path,
        sizes=[64],
        models=["s2mnet", "monai_unet"],
        device="cpu",
        repeats=1,
        warmup=0,
        isolate=False,
        say=lambda _: None,
    )
    rows = {row["model"]: row for row in result["rows"]}
    # the reference's ratios are 1 (None only where a CPU memory growth of 0 MiB has no ratio)
    assert all(value in (1.0, None) for value in rows["s2mnet"]["ratio"].values())
    assert rows["s2mnet"]["ratio"]["step_ms"] == 1.0 and rows["monai_unet"]["ratio"]["params"] > 1
    assert rows["s2mnet"]["params"] == 4_745_872 and rows["s2mnet"]["gflops_fft"] > 0
    assert rows["monai_unet"]["gflops_fft"] == 0 and rows["monai_unet"]["loss"] == "dicece"
    assert 0 < rows["s2mnet"]["masl_share"] < 1
    for name in ("efficiency.json", "efficiency.md", "efficiency.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "Ratios against `s2mnet`" in (tmp_path / "efficiency.md").read_text()
    (tmp_path / "efficiency.png").unlink()
    assert main(["bench", "efficiency", "--out", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "efficiency.png").is_file()


def test_efficiency_skips_what_cannot_run() -> None:
    assert efficiency.size_problem("monai_swinunetr", 100) is not None
    assert efficiency.size_problem("monai_swinunetr", 64) is None
    spec = {"name": "s2mnet", "size": 32, "device": "cpu", "repeats": 1}
    worker = efficiency.CellWorker()
    row = worker.measure(spec, timeout_s=0.05)  # the subprocess cannot even import torch in time
    assert "cap per cell" in row["skipped"] and worker.process is None
    with pytest.raises(S2MError, match="unknown"):
        efficiency.run_efficiency("unused", models=["nope"], say=lambda _: None)


# --- ablation -------------------------------------------------------------------------------------


def test_ablation_report_and_resume(tiny_data: Path, tiny_ablation: tuple, monkeypatch) -> None:
    out, report = tiny_ablation
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted((json.loads(x)["variant"], json.loads(x)["seed"]) for x in lines) == [
        ("full", 1),
        ("full", 2),
        ("no_sstm", 1),
        ("no_sstm", 2),
    ]
    splits = [
        json.loads((out / "runs" / r / "splits.json").read_text())["test"] for r in ("full_s1", "no_sstm_s2")
    ]
    assert splits[0] == splits[1] == json.loads((out / "splits.json").read_text())["test"]
    row = next(r for r in report["variants"] if r["variant"] == "no_sstm")
    assert set(row["vs_reference"]["by_seed"]) >= {"t_p", "wilcoxon_p", "t_p_bonf", "wilcoxon_p_bonf"}
    text = (out / "ablation.md").read_text()
    assert "| no_sstm | 2 |" in text and "Wilcoxon" in text and (out / "ablation.png").stat().st_size > 0

    def must_not_train(spec: dict) -> dict:
        raise AssertionError(f"{spec['variant']} seed {spec['seed']} was trained again")

    monkeypatch.setattr(ablation, "run_job", must_not_train)
    config = ablation.AblationConfig(
        data=tiny_data, out=out, variants=["full", "no_sstm"], seeds=[1, 2], plan=TINY_PLAN, device="cpu"
    )
    messages: list[str] = []
    ablation.run_ablation(config, say=messages.append)
    assert "4 already in" in messages[0] and "0 to do" in messages[0]
    with pytest.raises(S2MError, match="another data folder or budget"):
        ablation.run_ablation(
            ablation.AblationConfig(data=tiny_data, out=out, plan={**TINY_PLAN, "epochs": 2}, device="cpu")
        )
    (out / "ablation.md").unlink()
    assert main(["bench", "ablation", "--out", str(out), "--report-only"]) == 0
    assert (out / "ablation.md").read_text().count("| full | 2 |") == 1


def test_ablation_variants_are_buildable() -> None:
    from s2mnet.losses import list_losses
    from s2mnet.models import list_models

    for name, variant in ablation.VARIANTS.items():
        assert variant.model in list_models(), name
        assert variant.loss in list_losses(), name
    assert ablation.parse_variants("no_sstm,k16") == ["full", "no_sstm", "k16"]
    assert ablation.parse_variants("all")[0] == "full"
    with pytest.raises(S2MError, match="unknown"):
        ablation.parse_variants("k99")
