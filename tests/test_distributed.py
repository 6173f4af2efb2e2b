"""Distributed training under torchrun (2 CPU processes, gloo) and the data order it relies on."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from s2mnet.engine.distributed import RANK_DUMP_ENV, DistContext, make_sampler

TINY_ARGS = [
    "--device", "cpu", "--size", "32", "--mode", "resize", "--epochs", "3", "--batch-size", "2",
    "--samples-per-epoch", "8", "--seed", "3", "--patience", "1", "--model-arg=widths=[8, 8, 16, 16, 16]",
    "--model-arg=stem_width=8", "--model-arg=k=8",
]  # fmt: skip


def test_rank_shards_are_disjoint_and_cover_the_seeded_epoch() -> None:
    """Rank r of W takes positions r, r+W, ... of the permutation seeded by (seed, epoch)."""
    data = list(range(10))
    single = make_sampler(data, DistContext(), seed=4)
    shards = [make_sampler(data, DistContext(world_size=2, rank=r, backend="gloo"), seed=4) for r in (0, 1)]
    orders = []
    for epoch in (0, 1):
        for sampler in (single, *shards):
            sampler.set_epoch(epoch)
        orders.append(list(single))
        assert sorted(orders[-1]) == data
        assert list(shards[0]) == orders[-1][0::2] and list(shards[1]) == orders[-1][1::2]
    assert orders[0] != orders[1]  # a new order every epoch


@pytest.mark.slow
def test_torchrun_two_ranks_train_identically_and_write_one_run(tmp_path: Path) -> None:
    from s2mnet.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n=8, size=32, seed=0)
    run, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, "OMP_NUM_THREADS": "1", RANK_DUMP_ENV: str(dump)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "s2mnet.cli", "train", "--data", str(data), "--out", str(run), *TINY_ARGS]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    # Both ranks end with identical model and MASL weights, equal to the checkpoint rank 0 wrote.
    rank0, rank1 = load_file(dump / "rank0.safetensors"), load_file(dump / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and "loss.weighting.raw" in rank0
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    last = load_file(run / "last.safetensors")
    assert all(torch.equal(last[name], rank0[f"model.{name}"]) for name in last)

    # One run folder content, written once: one checkpoint set, one log, one TensorBoard stream.
    names = sorted(path.name for path in run.iterdir())
    assert names == sorted(
        [
            "best.safetensors",
            "curves.png",
            "last.safetensors",
            "plan.json",
            "run.json",
            "splits.json",
            "tensorboard",
            "train_log.csv",
            "train_state.safetensors",
        ]
    )
    assert len(list((run / "tensorboard").iterdir())) == 1
    config = json.loads((run / "run.json").read_text())
    assert config["status"] == "finished"
    assert config["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "batch_size_per_rank": 2,
        "effective_batch_size": 4,
    }
    with open(run / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(1, config["epochs_run"] + 1))
    assert int(rows[-1]["step"]) == 2 * config["epochs_run"]  # 8 samples / 2 ranks / batch 2 per epoch
    # Rank 0 alone prints: each epoch line once, and the effective batch size is reported.
    assert result.stdout.count("epoch   1/3") == 1
    assert "effective batch size 4 (gloo DDP)" in result.stdout
