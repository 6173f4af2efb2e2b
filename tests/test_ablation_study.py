"""Claims lab v3: declared studies, the convergence rule, the primary analysis and its statistics.

Statistics are checked against hand-computed cases (and statsmodels, where installed); studies run on
tiny synthetic data with a fake trainer (``run_job`` monkeypatched), so every test takes seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from s2mnet.bench import ablation
from s2mnet.bench.ablation import analysis, runner, study
from s2mnet.bench.ablation.records import read_results, relative_command
from s2mnet.bench.stats import (
    crossed_bootstrap_ci,
    hierarchical_bootstrap_ci,
    holm,
    paper_delta_test,
    tost_paired,
)
from s2mnet.cli import main
from s2mnet.errors import S2MError
from s2mnet.io_utils import relative_path

# --- the convergence rule -------------------------------------------------------------------------


def test_plateau_rule_cases() -> None:
    plateaued = ablation.plateaued
    assert plateaued([0.2, 0.6, 0.70, 0.705, 0.703, 0.704], 3, 0.01)  # flat at its best
    assert not plateaued([0.2, 0.5, 0.60, 0.65, 0.70, 0.75], 3, 0.01)  # still rising
    # the v2 rule called this converged: the last 3 do not beat the earlier best, but the curve falls
    assert not plateaued([0.2, 0.8, 0.78, 0.76, 0.74], 3, 0.01)
    # rising by less than min_delta per validation, but by more than min_delta over the window
    assert not plateaued([0.5, 0.700, 0.706, 0.712, 0.718], 3, 0.01)
    assert not plateaued([0.0, 0.0, 0.0, 0.0, 0.0], 3, 0.01)  # flat at the all-background value (0)
    assert not plateaued([0.4, 0.4, 0.4, 0.4, 0.4], 3, 0.01, background=0.4)  # BUSI: 40 % empty masks
    assert plateaued([0.4, 0.6, 0.6, 0.6, 0.6], 3, 0.01, background=0.4)
    assert not plateaued([0.6, 0.6], 3) and not plateaued([0.6, math.nan, 0.6, 0.6, 0.6], 3)


def test_failed_runs() -> None:
    assert ablation.failed([0.4, 0.4, 0.405], background=0.4, min_delta=0.01)
    assert not ablation.failed([0.4, 0.5, 0.45], background=0.4, min_delta=0.01)
    assert ablation.failed([0.4, 0.5], background=0.4, min_delta=0.01, finite_loss=False)
    assert ablation.failed([], background=0.0, min_delta=0.01)


# --- statistics by hand ---------------------------------------------------------------------------


def test_crossed_bootstrap_is_deterministic_and_exact_on_constants() -> None:
    ci = crossed_bootstrap_ci([[0.02, 0.02], [0.02, 0.02]], n=500, seed=3)
    assert ci["mean"] == pytest.approx(0.02) and ci["low"] == pytest.approx(0.02) == ci["high"]
    table = [[0.1, -0.2, 0.3], [0.0, 0.1, -0.1]]
    assert crossed_bootstrap_ci(table, n=300, seed=1) == crossed_bootstrap_ci(table, n=300, seed=1)
    assert crossed_bootstrap_ci([], n=10)["low"] is None


def test_crossed_bootstrap_replicate_by_hand() -> None:
    # one replicate: rows drawn (0, 0), columns drawn (1, 1): the mean of table[0][1] = 5
    table = np.array([[1.0, 5.0], [3.0, 7.0]])
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 2, size=(1, 2)), rng.integers(0, 2, size=(1, 2))
    expected = table[np.ix_(rows[0], cols[0])].mean()
    ci = crossed_bootstrap_ci(table, n=1, seed=0, level=0.5)
    assert ci["low"] == pytest.approx(expected) == ci["high"]


def test_crossed_bootstrap_is_wider_when_seeds_share_their_test_images() -> None:
    # every seed sees the same image effects (an easy and a hard image): the nested bootstrap resamples
    # images independently per seed and averages that variance away; the crossed one keeps it
    effects = [0.10, -0.05, 0.02, -0.08, 0.06, 0.00]
    table = [[e + s for e in effects] for s in (0.001, -0.001, 0.0, 0.002)]
    crossed = crossed_bootstrap_ci(table, n=4000, seed=0)
    nested = hierarchical_bootstrap_ci(dict(enumerate(table)), n=4000, seed=0)
    assert crossed["high"] - crossed["low"] >= 1.5 * (nested["high"] - nested["low"])


def test_holm_tost_and_paper_delta_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03, None]) == [
        pytest.approx(0.03),
        pytest.approx(0.06),
        pytest.approx(0.06),
        None,
    ]
    deltas = [0.001, -0.002, 0.003]  # mean 0.000667, sd 0.0025166, se 0.001453
    se = np.std(deltas, ddof=1) / math.sqrt(3)
    tost = tost_paired(deltas, margin=0.01)
    assert tost["p_lower"] == pytest.approx(scipy_stats.t.sf((np.mean(deltas) + 0.01) / se, 2))
    assert tost["p"] == pytest.approx(scipy_stats.t.cdf((np.mean(deltas) - 0.01) / se, 2))
    # "Δ equals the paper's −6.3 points": t = (0.000667 + 0.063) / se = 43.8 on 2 df
    test = paper_delta_test(deltas, -0.063)
    assert test["t"] == pytest.approx((np.mean(deltas) + 0.063) / se)
    assert test["p"] == pytest.approx(scipy_stats.ttest_1samp(np.array(deltas) + 0.063, 0.0).pvalue)
    assert paper_delta_test([0.01, 0.01], 0.01)["p"] == 1.0 and paper_delta_test([0.0, 0.0], 0.01)["p"] == 0.0
    assert paper_delta_test([0.01], 0.0)["p"] is None


def test_statistics_against_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    pvalues = [0.012, 0.3, 0.004, 0.04, 0.5]
    assert holm(pvalues) == pytest.approx(list(multitest.multipletests(pvalues, method="holm")[1]))
    a = np.array([0.79, 0.80, 0.78, 0.81, 0.795])
    b = np.array([0.785, 0.79, 0.79, 0.80, 0.79])
    ours = tost_paired(a - b, margin=0.01)
    theirs = weightstats.ttost_paired(a, b, -0.01, 0.01)
    assert ours["p"] == pytest.approx(theirs[0])
    assert ours["p_lower"] == pytest.approx(theirs[1][1]) and ours["p_upper"] == pytest.approx(theirs[2][1])
    test = paper_delta_test(a - b, -0.063)
    assert test["p"] == pytest.approx(scipy_stats.ttest_rel(a, b + (-0.063)).pvalue)


# --- the primary analysis -------------------------------------------------------------------------

CASES = ("a", "b", "c", "e1")


def _record(
    variant: str, seed: int, dice: list[float], *, pair: int | None = None, failed: bool = False
) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "pair_seed": seed if pair is None else pair,
        "dice": float(np.mean(dice)),
        "cases": {c: {"dice": d} for c, d in zip(CASES, dice, strict=True)},
        "curve": [[8, 0.25], [16, 0.25], [24, 0.25], [32, 0.25]] if failed else [[8, 0.5], [16, 0.7]],
        "converged": True,
    }


def _hand_study(**changes: object) -> dict:
    declared = {
        "name": "hand",
        "declared": "before its first run",
        "arms": ["paper", "paper_aa", "no_sstm"],
        "seeds": [1, 2, 3],
        "protocol": {"patience": 2, "min_delta": 0.01},
        "equivalence_margin": 0.01,
        "paper_effects": {"no_sstm": -0.063},
        "reference": "paper",
        "aa_arm": "paper_aa",
        "aa_seed_offset": 10000,
        "budget": "4 steps of 32² images",
        "background": {"val": 0.25},
        "empty_masks": ["e1"],
    }
    return {**declared, **changes}


def test_primary_analysis_keeps_failed_runs_and_leaves_out_undeclared_seeds() -> None:
    records = [
        *[_record("paper", s, [0.8, 0.7, 0.6, 1.0]) for s in (1, 2, 3)],
        *[_record("paper_aa", 10000 + s, [0.8, 0.7, 0.6, 0.0], pair=s) for s in (1, 2, 3)],
        _record("no_sstm", 1, [0.0, 0.0, 0.0, 1.0], failed=True),  # all background: found nothing
        _record("no_sstm", 2, [0.7, 0.7, 0.6, 1.0]),
        _record("no_sstm", 3, [0.8, 0.6, 0.6, 1.0]),
        _record("no_sstm", 99, [0.9, 0.9, 0.9, 1.0]),  # a seed added afterwards: sensitivity only
    ]
    primary = analysis.primary_analysis(records, _hand_study())
    row = next(r for r in primary["variants"] if r["variant"] == "no_sstm")
    assert (row["runs"], row["failed"]) == (3, 1)
    c = row["vs_reference"]
    assert c["n_pairs"] == 3 and c["pairs"] == [1, 2, 3]
    assert c["run_deltas"] == pytest.approx([-0.525, -0.025, -0.025])  # the failed run's pair kept
    assert c["paper"]["paper_delta"] == -0.063 and "at this budget (4 steps of 32² images)" in c["verdict"]
    assert c["bootstrap"].startswith("crossed")
    aa = next(r for r in primary["variants"] if r["variant"] == "paper_aa")["vs_reference"]
    assert aa["run_deltas"] == pytest.approx([-0.25] * 3)  # paired with paper by pair seed
    lesion = row["lesion"]
    assert lesion["lesion_dice"] == pytest.approx((0.0 + 2.0 / 3 + 2.0 / 3) / 3)
    assert lesion["found"] == pytest.approx(2 / 3) and lesion["false_positive"] == 0.0
    aa_lesion = next(r for r in primary["variants"] if r["variant"] == "paper_aa")["lesion"]
    assert aa_lesion["false_positive"] == 1.0  # predicted foreground on the normal image in every run
    assert primary["empty_prediction"]["dice"] == 0.25
    deltas = {d["variant"]: d for d in analysis.lesion_deltas(primary, records, _hand_study())}
    # paper finds 3 of 3 lesions and no false alarm in every run; the failed no_sstm run finds none
    assert deltas["no_sstm"]["found_delta"] == pytest.approx(-1 / 3)
    assert deltas["no_sstm"]["delta"] == pytest.approx(((0.0 - 0.7) + 2 * (2 / 3 - 0.7)) / 3)
    assert deltas["paper_aa"]["false_positive_delta"] == 1.0 and deltas["paper_aa"]["found_delta"] == 0.0
    flagged = analysis.reflag(records, _hand_study())
    assert [r["failed"] for r in flagged if r["variant"] == "no_sstm"] == [True, False, False, False]


def test_paper_delta_ruled_out_only_by_holm() -> None:
    records = [_record("paper", s, [0.8, 0.7, 0.6, 1.0]) for s in (1, 2, 3)]
    records += [
        _record("no_sstm", s, [0.8 + d, 0.7, 0.6, 1.0]) for s, d in ((1, 0.004), (2, -0.004), (3, 0.0))
    ]
    primary = analysis.primary_analysis(records, _hand_study(arms=["paper", "no_sstm"]))
    c = primary["variants"][1]["vs_reference"]
    assert c["paper_p_holm"] < 0.05 and "paper's Δ ruled out at this budget" in c["paper_verdict"]
    wide = [_record("no_sstm", s, [0.8 + d, 0.7, 0.6, 1.0]) for s, d in ((1, 0.3), (2, -0.3), (3, -0.2))]
    c = analysis.primary_analysis(records[:3] + wide, _hand_study(arms=["paper", "no_sstm"]))["variants"][1]
    assert "not ruled out" in c["vs_reference"]["paper_verdict"]


def test_budget_table_pending_and_complete() -> None:
    from s2mnet.bench.ablation.tables import budget_table

    records = [_record("paper", s, [0.8, 0.7, 0.6, 1.0]) for s in (1, 2, 3)]
    records += [_record("no_sstm", s, [0.78, 0.7, 0.6, 1.0]) for s in (1, 2, 3)]
    low = analysis.primary_analysis(records, _hand_study(arms=["paper", "no_sstm"]))
    pending = budget_table(low, None, ["no_sstm"])
    assert "pending: study declared, runs not complete" in pending[-1]
    done = budget_table(low, low, ["no_sstm"])
    assert done[-1].startswith("| `no_sstm` | -0.50") and done[-1].endswith("| +0.00 |")
    assert "interim" not in done[-1]
    partial = analysis.primary_analysis(records[:2] + records[3:5], _hand_study(arms=["paper", "no_sstm"]))
    assert "(interim: 2 of 3 runs)" in budget_table(low, partial, ["no_sstm"])[-1]


# --- declared studies -----------------------------------------------------------------------------

PROTOCOL = {
    "device": "cpu",
    "threads": 1,
    "plan": {"size": 32, "batch_size": 4, "samples_per_epoch": 8, "mode": "resize"},
    "max_steps": 4,
    "min_steps": None,
    "val_every": 1,
    "patience": 1,
    "min_delta": 0.005,
    "lr": None,
    "warmup_epochs": 0,
    "amp": "none",
}


@pytest.fixture(scope="module")
def study_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s2mnet.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("study_data"), n=12, size=32, seed=0)


def _declare(folder: Path, data: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    declared = {
        "name": "tiny",
        "declared": "before its first run",
        "data": str(data),
        "arms": ["paper", "paper_aa", "no_sstm"],
        "seeds": [1, 2],
        "protocol": PROTOCOL,
        "primary_metric": "dice",
        "equivalence_margin": 0.01,
        "paper_effects": {"no_sstm": -0.063},
        "budget": "4 steps of 32² images",
        **changes,
    }
    (folder / "study.json").write_text(json.dumps(declared))
    return folder


def _fake_job(trained: list[dict]):
    """A trainer stand-in: records what it was asked and scores each test case of the run's split."""

    def job(spec: dict) -> dict:
        trained.append(spec)
        test = json.loads(Path(spec["splits"]).read_text())["test"]
        cases = {c: {"dice": 0.5 + 0.01 * spec["data_seed"] % 0.3} for c in test}
        return {
            "variant": spec["variant"],
            "seed": spec["seed"],
            "data_seed": spec["data_seed"],
            "pair_seed": spec["pair_seed"],
            **({"fold": spec["fold"]} if spec.get("fold") is not None else {}),
            "dice": float(np.mean([v["dice"] for v in cases.values()])),
            "cases": cases,
            "curve": [[2, 0.3], [4, 0.5]],
            "converged": False,
            "failed": False,
            "steps": 4,
            "wall_s": 0.0,
            "command": spec["command"],
        }

    return job


def test_study_runs_what_it_declares_and_resumes(study_data: Path, tmp_path: Path, monkeypatch) -> None:
    folder = _declare(tmp_path / "study", study_data)
    trained: list[dict] = []
    monkeypatch.setattr(runner, "run_job", _fake_job(trained))
    ablation.run_study(folder, arms=["paper", "paper_aa"], replicates=[1], say=lambda _: None)
    assert [(s["variant"], s["seed"], s["data_seed"]) for s in trained] == [
        ("paper", 1, 1),
        ("paper_aa", 10001, 1),
    ]
    assert "Interim: 2 of the 6 declared runs are in" in (folder / "ablation.md").read_text()
    # the A/A run has its own initialisation but the data order of its pair seed; both are recorded
    aa = next(r for r in read_results(folder) if r["variant"] == "paper_aa")
    assert (aa["seed"], aa["data_seed"], aa["pair_seed"]) == (10001, 1, 1)
    assert {s["plan"]["epochs"] for s in trained} == {2} and {s["warmup_epochs"] for s in trained} == {0}
    ablation.run_study(folder, say=lambda _: None)  # the rest; finished runs are skipped
    assert len(trained) == 6 and len(read_results(folder)) == 6
    report = json.loads((folder / "ablation.json").read_text())
    assert report["budget"]["budget"] == "4 steps of 32² images" and report["budget"]["max_steps"] == 4
    with pytest.raises(S2MError, match="not declared"):
        ablation.run_study(folder, arms=["attention"], say=lambda _: None)
    with pytest.raises(S2MError, match="not declared"):
        ablation.run_study(folder, replicates=[3], say=lambda _: None)
    text = (folder / "ablation.md").read_text()
    assert "Primary analysis" in text and "Sensitivity analysis" in text and "Interim" not in text


def test_study_refuses_protocol_flags(study_data: Path, tmp_path: Path, capsys) -> None:
    folder = _declare(tmp_path / "study", study_data)
    for flags in (["--patience", "3"], ["--max-steps", "8"], ["--data", str(study_data)], ["--plan", "a=1"]):
        assert main(["bench", "ablation", "--study", str(folder), *flags]) != 0
        err = capsys.readouterr().err
        assert "is fixed by its study.json; a changed protocol is a new study in a new folder" in err
    assert main(["bench", "ablation", "--study", str(folder), "--seeds", "7"]) != 0
    assert "not declared in study.json" in capsys.readouterr().err
    assert not (folder / "results.jsonl").exists()
    scaled = _declare(tmp_path / "scaled", study_data, arm_scale={"no_sstm": 3})
    with pytest.raises(S2MError, match="separately named arm"):
        study.load_study(scaled)


def test_cv_study_uses_make_folds_and_tests_every_case_once(
    study_data: Path, tmp_path: Path, monkeypatch
) -> None:
    from s2mnet.data.discover import discover
    from s2mnet.data.folds import fold_run_splits, make_folds

    folder = _declare(
        tmp_path / "cv", study_data, seeds=None, folds=3, fold_seed=0, fold_init_seeds=[5, 6, 7]
    )
    trained: list[dict] = []
    monkeypatch.setattr(runner, "run_job", _fake_job(trained))
    ablation.run_study(folder, say=lambda _: None)
    index = discover(study_data)
    folds = make_folds(index, 3, 0)
    assert json.loads((folder / "folds.json").read_text())["folds"] == folds["folds"]
    for k in range(3):
        expected = fold_run_splits(folds, k, index, 0)
        assert json.loads((folder / f"splits_fold{k}.json").read_text())["test"] == expected["test"]
    records = read_results(folder)
    assert len(records) == 9
    for name in ("paper", "paper_aa", "no_sstm"):
        tested = [c for r in records if r["variant"] == name for c in r["cases"]]
        assert sorted(tested) == sorted(c.case_id for c in index.cases)  # every case exactly once
    aa = sorted((r["fold"], r["seed"], r["data_seed"]) for r in records if r["variant"] == "paper_aa")
    assert aa == [(0, 10005, 5), (1, 10006, 6), (2, 10007, 7)]
    primary = json.loads((folder / "ablation.json").read_text())["primary"]
    assert primary["variants"][2]["vs_reference"]["bootstrap"].startswith("nested")


# --- relative paths -------------------------------------------------------------------------------


def _append_many(folder: str, worker: int, start) -> None:
    from s2mnet.bench.ablation.records import append_result

    cases = {f"case {i}": {"dice": 0.5} for i in range(400)}  # a record of real size: the rewrite takes time
    start.wait()
    for seed in range(40):
        append_result(Path(folder), {"variant": f"arm{worker}", "seed": seed, "dice": 0.5, "cases": cases})


def test_two_processes_append_without_losing_a_line(tmp_path: Path) -> None:
    """``--folds 0,1`` and ``--folds 2,3,4`` in two processes: every record of both survives."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, start)) for w in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(read_results(tmp_path)) == 80


def test_records_hold_relative_paths(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    monkeypatch.chdir(root)
    assert relative_path(str(root / "docs" / "x")) == "docs/x"
    assert relative_path(str(tmp_path / "shared" / "data" / "DRIVE")) == "../shared/data/DRIVE"
    assert relative_path("docs/x") == "docs/x" and relative_path("/elsewhere") != ""
    command = ["s2m", "--data", str(tmp_path / "shared" / "d"), f"--out={root / 'o'}"]
    assert relative_command(command) == ["s2m", "--data", "../shared/d", "--out=o"]
    config = ablation.AblationConfig(data=tmp_path / "shared" / "d", out="o")
    assert runner._budget(config)["data"] == "../shared/d"
    assert runner._spec(config, Path("o"), "paper", 1)["command"][0] != str(root)


def test_data_order_follows_the_data_seed_not_the_init_seed() -> None:
    import torch

    from s2mnet.engine.config import TrainConfig
    from s2mnet.engine.distributed import DistContext
    from s2mnet.engine.train import _train_loader

    def order(seed: int, data_seed: int | None) -> list[int]:
        config = TrainConfig(data=".", out=".", seed=seed, data_seed=data_seed, workers=0)
        loader = _train_loader(
            list(range(16)), {"batch_size": 16}, config, torch.device("cpu"), DistContext()
        )
        return next(iter(loader)).tolist()

    assert order(10042, 42) == order(42, None) == order(42, 42)  # the A/A run's data order is its pair's
    assert order(10042, None) != order(42, None)  # v2's A/A changed it with the initialisation
