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
from s2mnet.bench.stats import bonferroni, fit_exponent, holm, mean_sd, paired_tests
from s2mnet.cli import main
from s2mnet.errors import S2MError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n=10, size=32, seed=0)


ABLATION_PLAN = {"size": 32, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"}
ABLATION_BUDGET = {"plan": ABLATION_PLAN, "max_epochs": 3, "patience": 1, "val_every": 1}


@pytest.fixture(scope="module")
def ablation_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("ablation_data"), n=12, size=48, seed=0)


@pytest.fixture(scope="module")
def tiny_ablation(ablation_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """2 arms × 2 seeds, 3 epochs of 2 steps at most (about 5 s per run on 2 shared cores)."""
    out = tmp_path_factory.mktemp("ablation")
    config = ablation.AblationConfig(
        data=ablation_data, out=out, arms=["paper", "no_sstm"], seeds=[1, 2], device="cpu", **ABLATION_BUDGET
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 5× faster than 2 spinning OpenMP threads on a busy 2-core machine
    try:
        report = ablation.run_ablation(config, say=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return out, report


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


def _record(variant: str, seed: int, dice: list[float], converged: bool | None = True) -> dict:
    cases = {f"c{i}": {"dice": d, "hd95": 1.0} for i, d in enumerate(dice)}
    record = {"variant": variant, "seed": seed, "dice": float(np.mean(dice)), "hd95": 1.0, "cases": cases}
    if converged is not None:  # None: an old record without the key
        record["converged"] = converged
    return record


def test_summary_of_hand_made_results() -> None:
    offset = ablation.AA_SEED_OFFSET
    records = [_record("paper", s, [0.80 + 0.01 * s, 0.70, 0.75]) for s in (1, 2, 3, 4)]
    records += [_record("no_sstm", s, [0.60 + 0.01 * s, 0.50, 0.60 + 0.02 * s]) for s in (1, 2, 3)]
    records += [_record("no_sstm", 4, [0.9, 0.9, 0.9], converged=False)]  # left out of the statistics
    aa_shift = {1: 0.002, 2: -0.001, 3: 0.001, 4: -0.002}  # A/A: noise around 0
    records += [
        _record("paper_aa", s + offset, [0.80 + 0.01 * s, 0.70 + aa_shift[s], 0.75]) for s in aa_shift
    ]
    records += [_record("k16", s, [0.8, 0.7, 0.75]) for s in (1, 2)]  # 2 pairs: not testable
    records += [_record("full", 1, [0.5, 0.5, 0.5], converged=None)]  # an old record: not converged
    summary = ablation.summarise_results(records)
    rows = {row["variant"]: row for row in summary["variants"]}
    assert rows["no_sstm"]["converged"] == 3 and rows["no_sstm"]["runs"] == 4
    assert rows["full"]["converged"] == 0 and rows["full"]["vs_reference"]["verdict"] == "not testable"
    no_sstm = rows["no_sstm"]["vs_reference"]
    assert no_sstm["pairs"] == [[1, 1], [2, 2], [3, 3]]
    # run-level differences of the means over the 3 cases: (−0.2 − 0.2 − 0.15 + 0.02·s) / 3, s = 1, 2, 3
    deltas = [(-0.55 + 0.02 * s) / 3 for s in (1, 2, 3)]
    assert no_sstm["delta"] == pytest.approx(np.mean(deltas))
    expected = scipy_stats.ttest_rel(
        [np.mean([0.60 + 0.01 * s, 0.50, 0.60 + 0.02 * s]) for s in (1, 2, 3)],
        [np.mean([0.80 + 0.01 * s, 0.70, 0.75]) for s in (1, 2, 3)],
    ).pvalue
    assert no_sstm["run_test"]["p"] == pytest.approx(expected)
    assert summary["testable"] == 2  # no_sstm and paper_aa; k16 and full have < 3 pairs
    aa = rows["paper_aa"]["vs_reference"]
    assert no_sstm["p_holm"] == pytest.approx(holm([expected, aa["run_test"]["p"]])[0])
    assert no_sstm["ci"][1] < 0 and no_sstm["verdict"] == "different"
    # t interval over the 3 run-level differences −0.53/3, −0.51/3, −0.49/3: mean −0.17, sd 0.02/3, df 2
    half_width = scipy_stats.t.ppf(0.975, 2) * (0.02 / 3) / math.sqrt(3)
    assert no_sstm["t_ci"] == pytest.approx([-0.17 - half_width, -0.17 + half_width])
    # simultaneous over the 2 testable arms: level 1 − 0.05/2, quantile t_{0.9875, 2}
    wide = scipy_stats.t.ppf(0.9875, 2) * (0.02 / 3) / math.sqrt(3)
    assert no_sstm["simultaneous_t_ci"] == pytest.approx([-0.17 - wide, -0.17 + wide]) and wide > half_width
    assert rows["k16"]["vs_reference"]["simultaneous_t_ci"] == [None, None]
    assert aa["pairs"] == [[1 + offset, 1], [2 + offset, 2], [3 + offset, 3], [4 + offset, 4]]
    assert aa["delta"] == pytest.approx(0.0, abs=1e-12) and aa["run_test"]["p"] == pytest.approx(1.0)
    assert aa["verdict"] == "equivalent"
    first = aa["by_case_per_pair"][0]  # the old case-level test on seed pair 1 alone: differences 0, .002, 0
    assert first["seeds"] == [1 + offset, 1] and first["delta"] == pytest.approx(0.002 / 3)
    expected_pair = scipy_stats.ttest_rel([0.81, 0.702, 0.75], [0.81, 0.70, 0.75]).pvalue
    assert first["t_p"] == pytest.approx(expected_pair)
    assert rows["k16"]["vs_reference"]["verdict"] == "not testable"


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
    run = tiny_ablation[0] / "runs" / "paper_s1"
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
    assert rows["monai_unet"]["ratio_monai_unet"]["step_ms"] == 1.0  # the peer of the same run
    assert rows["s2mnet"]["ratio_monai_unet"]["params"] < 1 and rows["s2mnet"]["step_amp"] == "none"
    for name in ("efficiency.json", "efficiency.md", "efficiency.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "Ratios against `s2mnet`" in (tmp_path / "efficiency.md").read_text()
    assert "Ratios against `monai_unet`" in (tmp_path / "efficiency.md").read_text()
    (tmp_path / "efficiency.png").unlink()
    assert main(["bench", "efficiency", "--out", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "efficiency.png").is_file()


def test_efficiency_times_the_trainers_step(monkeypatch) -> None:
    from s2mnet.engine.trainer import Trainer

    calls = []
    train_epoch = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self: calls.append(self) or train_epoch(self))
    row = efficiency.measure_cell("monai_unet", 32, batch=2, repeats=2, warmup=1, channels_last=True)
    assert len(calls) == 1 + 1 + row["step_runs"]  # memory, warm-up, timed: every step is Trainer's
    assert calls[0].memory_format == torch.channels_last and row["channels_last"] and row["step_ms"] > 0
    assert calls[0].optimizer.defaults["weight_decay"] == 1e-4 and calls[0].plan["clip_grad"] == 1.0


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


def test_an_interrupted_run_continues_to_the_record_of_an_uninterrupted_one(
    ablation_data: Path, tiny_ablation: tuple, tmp_path: Path, monkeypatch
) -> None:
    """A session killed mid-run: the next ``s2m bench ablation`` continues that run from its last epoch
    (same curve, Dice and per-case scores as the fixture's uninterrupted run), a run killed during its
    evaluation is only evaluated, and a folder made with another protocol is not continued."""
    from s2mnet.bench.ablation import runner
    from s2mnet.engine.continuation import computes_the_same
    from s2mnet.engine.rundir import read_run_config
    from s2mnet.engine.trainer import Trainer

    out, _ = tiny_ablation
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    reference = next(r for r in records if (r["variant"], r["seed"]) == ("paper", 1))
    assert reference["resumed"] is None and reference["epochs_run"] >= 2
    config = ablation.AblationConfig(
        data=ablation_data, out=out, arms=["paper", "no_sstm"], seeds=[1, 2], device="cpu", **ABLATION_BUDGET
    )
    run_dir = tmp_path / "paper_s1"
    spec = {**runner._spec(config, out, "paper", 1), "run_dir": str(run_dir)}
    original, epochs = Trainer.train_epoch, []

    def killed_in_epoch_2(self: Trainer, *args, **kwargs):
        epochs.append(self.epoch)
        if len(epochs) == 2:
            raise KeyboardInterrupt  # the session ends after epoch 1's training state was written
        return original(self, *args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture's runs
    try:
        with monkeypatch.context() as patch:
            patch.setattr(Trainer, "train_epoch", killed_in_epoch_2)
            with pytest.raises(KeyboardInterrupt):
                runner.run_job(spec)
        assert read_run_config(run_dir)["status"] == "running"
        record = runner.run_job(spec)
    finally:
        torch.set_num_threads(threads)
    assert record["resumed"]["from_epoch"] == 1 and record["resumed"]["earlier_s"] > 0
    assert record["resumed"]["from_epochs"] == [1]  # every continuation, as run.json lists them
    assert record["epochs_run"] == reference["epochs_run"] and record["steps"] == reference["steps"]
    assert [s for s, _ in record["curve"]] == [s for s, _ in reference["curve"]]
    assert [d for _, d in record["curve"]] == pytest.approx([d for _, d in reference["curve"]], abs=1e-6)
    assert record["dice"] == pytest.approx(reference["dice"], abs=1e-6)
    assert record["cases"].keys() == reference["cases"].keys()
    for case, scores in record["cases"].items():
        assert scores["dice"] == pytest.approx(reference["cases"][case]["dice"], abs=1e-6)

    def must_not_train(config):
        raise AssertionError("a run that had finished training was trained again")

    monkeypatch.setattr("s2mnet.engine.continuation.train", must_not_train)  # killed during its evaluation
    again = runner.run_job(spec)
    assert again["resumed"]["from_epoch"] == record["epochs_run"] and again["dice"] == record["dice"]
    assert again["resumed"]["from_epochs"] == [1]  # its evaluation continued; its training once, from 1

    from s2mnet.engine.config import TrainConfig

    stored = read_run_config(run_dir)
    same = dict(
        data=ablation_data, out=tmp_path / "elsewhere", model="s2mnet", loss="masl", seed=1, device="cpu",
        plan_overrides=spec["plan"], splits=spec["splits"], model_args=spec["model_args"],
        loss_args=reference["loss_args"], lr=spec["lr"], patience=1, val_every=1, quiet=True,
        tensorboard=False,
    )  # fmt: skip
    assert computes_the_same(stored, TrainConfig(**same))
    assert computes_the_same(stored, TrainConfig(**same, time_limit_s=60.0, workers=2, command=["x"]))
    assert not computes_the_same(stored, TrainConfig(**{**same, "lr": spec["lr"] * 2}))
    assert not computes_the_same(stored, TrainConfig(**{**same, "data": tmp_path}))
    assert not computes_the_same({**stored, "train_config": None}, TrainConfig(**same))


def test_ablation_runs_report_and_resume(ablation_data: Path, tiny_ablation: tuple, monkeypatch) -> None:
    from s2mnet.bench.ablation import runner

    out, report = tiny_ablation
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["variant"], r["seed"]) for r in records) == [
        ("no_sstm", 1),
        ("no_sstm", 2),
        ("paper", 1),
        ("paper", 2),
    ]
    for record in records:
        assert {"variant", "seed", "dice", "converged", "curve", "cases", "pair_seed"} <= set(record)
        assert isinstance(record["converged"], bool) and 0.0 <= record["dice"] <= 1.0
        steps = [step for step, _ in record["curve"]]
        assert steps == sorted(steps) and 1 <= len(steps) <= 3 and steps[-1] == record["steps"] <= 6
        values = [dice for _, dice in record["curve"]]
        assert record["converged"] == ablation.plateaued(values, 1, background=record["background_val_dice"])
        assert record["failed"] == ablation.failed(values, record["background_val_dice"], 0.005)
        assert record["loss_args"]["weighting"] == "paper" and record["loss_args"]["gate_structure"] is False
    splits = [
        json.loads((out / "runs" / r / "splits.json").read_text())["test"] for r in ("paper_s1", "no_sstm_s2")
    ]
    assert splits[0] == splits[1] == json.loads((out / "splits.json").read_text())["test"]
    row = next(r for r in report["variants"] if r["variant"] == "no_sstm")
    assert {
        "ci",
        "t_ci",
        "simultaneous_t_ci",
        "run_test",
        "tost",
        "p_holm",
        "by_case",
        "by_case_per_pair",
    } <= set(row["vs_reference"])
    text = (out / "ablation.md").read_text()
    columns = ("Δ [bootstrap 95 % CI]", "t 95 % CI", "simultaneous t CI", "t p (Holm)", "TOST p (Holm)")
    for column in (*columns, "verdict"):
        assert column in text
    assert "| no_sstm |" in text and "hierarchical bootstrap" in text
    assert (out / "ablation.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0

    def must_not_train(spec: dict) -> dict:
        raise AssertionError(f"{spec['variant']} seed {spec['seed']} was trained again")

    monkeypatch.setattr(runner, "run_job", must_not_train)
    config = ablation.AblationConfig(
        data=ablation_data, out=out, arms=["paper", "no_sstm"], seeds=[1, 2], device="cpu", **ABLATION_BUDGET
    )
    messages: list[str] = []
    ablation.run_ablation(config, say=messages.append)
    assert "4 already in" in messages[0] and "0 to do" in messages[0]
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    with pytest.raises(S2MError, match="another data folder or budget"):
        ablation.run_ablation(
            ablation.AblationConfig(data=ablation_data, out=out, **{**ABLATION_BUDGET, "patience": 2})
        )
    (out / "ablation.md").unlink()
    assert main(["bench", "ablation", "--out", str(out), "--report-only"]) == 0
    assert "| paper | " in (out / "ablation.md").read_text()


def test_old_results_without_converged_are_read(tmp_path: Path) -> None:
    old = {
        "variant": "full",
        "seed": 42,
        "dice": 0.6,
        "hd95": 3.0,
        "cases": {"a": {"dice": 0.6, "hd95": 3.0}},
    }
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n" + json.dumps({**old, "variant": "paper"}))
    summary = ablation.write_report(tmp_path)
    assert [row["converged"] for row in summary["variants"]] == [0, 0]
    assert "not testable" in (tmp_path / "ablation.md").read_text()


def test_arms_seeds_and_budget() -> None:
    from s2mnet.bench.ablation.arms import resolve_model_args
    from s2mnet.losses import create_loss, list_losses
    from s2mnet.models import list_models

    required = {"paper", "paper_aa", "ours", "no_sstm", "attention", "k16", "kfull", "cfilter", "dicece"}
    required |= {"masl_fixed", "masl_nomod", "no_boundary", "no_bfd", "bfd_norouting", "no_mrfse"}
    assert required | {"unet_dicece", "monai_unet_dicece", "monai_unet_dicece_3x"} == set(ablation.ARMS)
    for name in ablation.ARMS:
        arm = ablation.arm(name)
        assert arm.model in list_models() and arm.loss in list_losses(), name
        create_loss(arm.loss, **arm.loss_args)
    paper = ablation.arm("paper")
    assert paper.loss_args["weighting"] == "paper" and paper.loss_args["gate_structure"] is False
    assert paper.loss_args["initial_weights"] == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert ablation.arm("masl_fixed").loss_args["initial_weights"] == [1.0] * 5
    assert (
        ablation.arm("no_bfd").model == "s2mnet_plaindec"
        and ablation.arm("bfd_norouting").model == "s2mnet_nobfd"
    )
    assert ablation.core_arms() == [
        "paper",
        "paper_aa",
        "no_sstm",
        "attention",
        "dicece",
        "unet_dicece",
        "monai_unet_dicece",
    ]
    seeds = list(ablation.DEFAULT_SEEDS)
    assert len(seeds) >= 5 and ablation.arm_seeds("dicece", seeds) == seeds
    assert ablation.arm_seeds("k16", seeds) == seeds[:3]
    aa = ablation.arm_seeds("paper_aa", seeds)
    assert len(aa) == len(seeds) and not set(aa) & set(seeds)
    assert resolve_model_args("kfull", 128) == {"k": [64, 32, 16, 8, 4]}
    with pytest.raises(S2MError, match="training size"):
        resolve_model_args("kfull", None)
    assert ablation.parse_arms("no_sstm,k16") == ["paper", "no_sstm", "k16"]
    assert ablation.parse_arms("core") == ablation.core_arms()
    with pytest.raises(S2MError, match="unknown"):
        ablation.parse_arms("k99")
    assert ablation.plateaued([0.5, 0.7, 0.703, 0.704], 2) and not ablation.plateaued([0.5, 0.7, 0.71], 1)
    assert not ablation.plateaued([0.5], 1)
    assert ablation.steps_per_epoch(64, 8) == 8 and ablation.steps_per_epoch(12, 8) == 2
    assert ablation.epochs_for_steps(400, 64, 8) == 50
    from s2mnet.bench.ablation.runner import AblationConfig, _spec

    config = AblationConfig(data=None, out="study", plan={"size": 32}, max_epochs=20, min_epochs=5)
    specs = {name: _spec(config, Path("study"), name, 42) for name in ("paper", "monai_unet_dicece")}
    # equal compute for the 3x cheaper peer: cap and floor scale, the learning rate stays the study's
    assert {n: (s["plan"]["epochs"], s["min_epochs"], s["lr"]) for n, s in specs.items()} == {
        "paper": (20, 5, 1e-3),
        "monai_unet_dicece": (60, 15, 1e-3),
    }


def test_ablation_command_line_checks(ablation_data: Path, tmp_path: Path, capsys) -> None:
    base = ["bench", "ablation", "--data", str(ablation_data), "--out", str(tmp_path / "out")]
    assert main([*base, "--max-steps", "10"]) != 0
    assert "--max-steps needs --samples-per-epoch and --batch-size" in capsys.readouterr().err
    steps = ["--samples-per-epoch", "8", "--batch-size", "4"]
    assert main([*base, *steps, "--max-steps", "4", "--min-steps", "6"]) != 0
    assert "is above the cap" in capsys.readouterr().err
    assert main([*base, "--plan", "epochs=3"]) != 0
    assert "--max-epochs or --max-steps" in capsys.readouterr().err
    assert main([*base, "--arms", "k99"]) != 0
    assert "unknown ['k99']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything is written


_WORKER = (
    "from s2mnet.bench.ablation.worker import die_with_parent; die_with_parent(); "
    "print('ready', flush=True); import time; time.sleep(120)"
)
_PARENT = f"""
import os, subprocess, sys, time
from s2mnet.bench.ablation.runner import PARENT_PID_ENV
env = {{**os.environ, PARENT_PID_ENV: str(os.getpid())}}
child = subprocess.Popen([sys.executable, "-c", {_WORKER!r}], env=env, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="parent-death signal is Linux-only")
@pytest.mark.parametrize("sigterm_ignored", [False, True], ids=["plain", "sigterm-ignored"])
def test_a_killed_study_takes_its_workers_with_it(sigterm_ignored: bool) -> None:
    """Also when the study was started where SIGTERM is ignored (``nohup``-style launchers): the
    workers inherit that, so a SIGTERM parent-death signal left them training on."""
    import signal
    import subprocess
    import sys
    import time

    def ignore_sigterm() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigterm if sigterm_ignored else None,
    )
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)  # kill -9: the parent gets no chance to clean up
    parent.wait()
    deadline = time.monotonic() + 60  # generous: the check is that it ends, not how fast
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="parent-death signal is Linux-only")
def test_a_worker_whose_parent_is_already_gone_stops() -> None:
    import os
    import subprocess
    import sys

    from s2mnet.bench.ablation.runner import PARENT_PID_ENV

    env = {**os.environ, PARENT_PID_ENV: str(os.getpid() + 999_999)}  # not this worker's parent
    command = [sys.executable, "-c", _WORKER]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "is gone" in done.stderr and "ready" not in done.stdout
