"""The presets' data file (s2mnet/planning/presets/presets.toml): shipped, complete, validated on load."""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from s2mnet.data.labels import LABEL_PRESETS
from s2mnet.errors import S2MError
from s2mnet.planning.presets import PRESETS, PaperNumbers, Preset, get_preset
from s2mnet.planning.presets.registry import PRESETS_FILE, load_presets

_FILE = resources.files("s2mnet.planning.presets").joinpath(PRESETS_FILE)

_GOOD = """
[demo]
title = "Demo"
modality = "synthetic"
layout = "images/<n>.png ↔ masks/<n>.png"
label_mode = "binary"
classes = ["thing"]
split_file = "kvasir.json"
protocol = "resize"
name_pattern = '\\d+'
example_names = "1, 2"
paper.s2mnet = 90.0
paper.baselines = { U-Net = 80.0, TransUNet = 81.0, Swin-Unet = 82.0, Other = 83.5 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "presets.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_toml_round_trips_into_the_registry() -> None:
    tables = tomllib.loads(_FILE.read_text("utf-8"))
    assert list(tables) == list(PRESETS) and len(PRESETS) == 15
    assert load_presets() == PRESETS  # loading again gives equal (frozen) presets
    names = {f.name for f in dataclasses.fields(Preset)}
    assert "full_size" not in names
    for name, preset in PRESETS.items():
        assert isinstance(preset, Preset) and isinstance(preset.paper, PaperNumbers)
        assert preset.name == name and preset.title and preset.layout and preset.classes
        assert preset.split_spec()["kind"] in ("lists", "published", "seeded")
        assert list(preset.paper.baselines)[:3] == ["U-Net", "TransUNet", "Swin-Unet"]
        assert preset.paper.s2mnet == tables[name]["paper"]["s2mnet"]


def test_paper_numbers_match_the_paper() -> None:
    # hand-copied from method.md §5
    assert get_preset("drive").paper.s2mnet == 84.06
    assert get_preset("busi").paper.s2mnet == 85.07
    assert get_preset("kvasir").paper.s2mnet == 96.05
    assert get_preset("kvasir").paper.baselines == {
        "U-Net": 90.64,
        "TransUNet": 93.75,
        "Swin-Unet": 93.22,
        "DuckNet": 94.11,
    }
    assert get_preset("cvc-colondb").paper.best_baseline() == ("PraNet", 92.78)


def test_labels_by_name_and_by_range() -> None:
    assert get_preset("brats2020").labels == LABEL_PRESETS["brats"]
    assert get_preset("brats2020").labels is not LABEL_PRESETS["brats"]  # a copy, not the shared dict
    assert get_preset("brats2020").epoch_factor == 1 and get_preset("drive").epoch_factor == 30
    glas = get_preset("glas").labels
    assert glas == {"label_mode": "binary", "regions": {"gland": list(range(1, 256))}}


def test_a_valid_file_loads(tmp_path: Path) -> None:
    presets = load_presets(_write(tmp_path, _GOOD))
    assert presets["demo"].paper.best_baseline() == ("Other", 83.5) and presets["demo"].ready


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('title = "Demo"\n', "", "missing field.*title"),
        ('title = "Demo"\n', 'title = "Demo"\nsize = 3\n', "unknown field.*size"),
        ('label_mode = "binary"', 'label_mode = "binarry"', "label_mode 'binarry'"),
        ('protocol = "resize"', 'protocol = "patches"', "protocol 'patches'"),
        ('["thing"]', "[]", "classes"),
        ("'\\d+'", "'(['", "name_pattern"),
        ('"kvasir.json"', '"nope.json"', "split_file 'nope.json'"),
        ("paper.s2mnet = 90.0", 'paper.s2mnet = "90"', "paper.s2mnet"),
        ("TransUNet = 81.0, ", "", "lacks the column.*TransUNet"),
        ('example_names = "1, 2"', 'example_names = "1"\nlabels = "nope"', "labels 'nope'"),
        ('example_names = "1, 2"', 'example_names = "1"\nlabels = { regions = { a = "1-3" } }', "FIRST"),
        ('example_names = "1, 2"', 'example_names = "1"\nepoch_factor = 0', "epoch_factor"),
        ("[demo]", "[Demo]", "lower-case"),
    ],
)
def test_a_malformed_entry_names_the_preset(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in _GOOD
    with pytest.raises(S2MError, match=f"preset '[Dd]emo': .*{message}"):
        load_presets(_write(tmp_path, _GOOD.replace(old, new)))


def test_unreadable_toml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(S2MError, match="not valid TOML"):
        load_presets(_write(tmp_path, "[demo\n"))
