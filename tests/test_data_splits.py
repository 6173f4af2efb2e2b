"""Deterministic splits, published splits, split files (s2mnet.data.splits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2mnet.data.splits import load_splits, make_splits, save_splits
from s2mnet.data.types import Case, DatasetIndex
from s2mnet.errors import DataError


def index_of(ids: list[str], known_split: dict | None = None) -> DatasetIndex:
    cases = [Case(i, Path(f"/d/images/{i}.png"), (Path(f"/d/masks/{i}.png"),)) for i in ids]
    return DatasetIndex(Path("/d"), cases, "images-masks", known_split=known_split)


def test_random_split_is_70_15_15_deterministic_and_disjoint():
    index = index_of([f"c{i:02d}" for i in range(40)])
    first, again, other = make_splits(index, seed=3), make_splits(index, seed=3), make_splits(index, seed=4)
    assert first == again and first["train"] != other["train"]
    assert (len(first["train"]), len(first["val"]), len(first["test"])) == (28, 6, 6)
    together = first["train"] + first["val"] + first["test"]
    assert sorted(together) == sorted(c.case_id for c in index.cases)
    assert first["seed"] == 3 and "random" in first["source"]


@pytest.mark.parametrize(("n", "sizes"), [(1, (1, 1, 1)), (2, (1, 1, 1)), (3, (1, 1, 1)), (5, (3, 1, 1))])
def test_small_sets_keep_a_validation_and_test_case(n, sizes):
    split = make_splits(index_of([f"c{i}" for i in range(n)]))
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == sizes


def test_published_split_carves_validation_from_train():
    train = [f"{i}_training" for i in range(21, 41)]
    test = [f"{i:02d}_test" for i in range(1, 21)]
    known = {"train": train, "val": [], "test": test, "source": "file names"}
    split = make_splits(index_of(train + test, known), seed=0)
    assert split["test"] == test and len(split["val"]) == 4 and len(split["train"]) == 16
    assert set(split["val"]) <= set(train) and not set(split["val"]) & set(split["train"])
    assert "published" in split["source"] and "val carved" in split["source"]


def test_save_and_load_round_trip(tmp_path):
    index = index_of([f"c{i}" for i in range(10)])
    split = make_splits(index, seed=1)
    save_splits(split, tmp_path / "splits.json")
    assert load_splits(tmp_path / "splits.json", index) == split


def test_user_split_by_file_name_and_val_carved(tmp_path):
    index = index_of(["a", "b", "c", "d", "e"])
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"train": ["a.png", "b", "c", "d"], "test": ["e"]}))
    split = load_splits(path, index)
    assert split["test"] == ["e"] and len(split["val"]) == 1
    assert sorted(split["train"] + split["val"]) == ["a", "b", "c", "d"]


def test_user_split_errors_name_the_file(tmp_path):
    index = index_of(["a", "b", "c"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train": ["a", "zz"], "val": ["b"], "test": ["c"]}))
    with pytest.raises(DataError, match=r"bad\.json: 1 unknown case names: zz"):
        load_splits(path, index)
    path.write_text(json.dumps({"train": ["a"], "val": ["a"], "test": ["c"]}))
    with pytest.raises(DataError, match=r"bad\.json: case 'a' is in both 'train' and 'val'"):
        load_splits(path, index)
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: not a readable JSON"):
        load_splits(path, index)
    path.write_text(json.dumps({"val": ["a"]}))
    with pytest.raises(DataError, match=r'bad\.json: a split file needs a non-empty "train"'):
        load_splits(path, index)
    with pytest.raises(DataError, match=r"absent\.json: split file not found"):
        load_splits(tmp_path / "absent.json", index)
