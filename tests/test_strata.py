"""The empty-truth split of evaluation figures (inference/strata.py), on hand-made rows."""

from s2mnet.inference.strata import empty_truth_split, split_lines


def _row(dice: float, truth: int, pred: int) -> dict:
    return {"dice": dice, "truth_pixels": truth, "pred_pixels": pred}


def test_lesion_and_normal_images_are_scored_apart_beside_the_all_empty_prediction():
    rows = [
        _row(0.8, 50, 40),  # found
        _row(0.0, 30, 0),  # missed (nothing predicted)
        _row(0.6, 20, 25),  # found
        _row(1.0, 0, 0),  # normal image, nothing predicted
        _row(0.0, 0, 12),  # false alarm on a normal image
    ]
    split = empty_truth_split(rows)
    assert split["foreground_images"] == {"n": 3, "dice": (0.8 + 0.0 + 0.6) / 3, "found": 2, "missed": 1}
    assert split["empty_images"] == {"n": 2, "dice": 0.5, "false_positives": 1}
    # predicting nothing: Dice 1 on the two normal images, 0 on the three lesion images
    expected = {"dice": 0.4, "foreground_dice": 0.0, "found": 0, "false_positives": 0}
    assert split["all_empty_prediction"] == expected
    lines = split_lines(split)
    assert "found 2 of 3" in lines[0] and "false positives on 1 of them" in lines[0]
    assert "Dice 0.4000 overall" in lines[1]


def test_no_split_when_every_truth_has_foreground():
    assert empty_truth_split([_row(0.7, 10, 10), _row(0.2, 5, 9)]) is None
    assert split_lines(None) == []


def test_a_lesion_is_found_only_above_the_shared_threshold():
    """A stray overlap (Dice 0.05) is not a found lesion; evaluate and the claims lab share FOUND_DICE."""
    from s2mnet.bench.ablation import analysis
    from s2mnet.inference import strata

    rows = [_row(0.05, 400, 30), _row(0.11, 50, 40), _row(1.0, 0, 0)]
    split = empty_truth_split(rows)
    assert strata.FOUND_DICE == 0.1 and analysis.FOUND_DICE is strata.FOUND_DICE
    assert split["foreground_images"]["found"] == 1 and split["foreground_images"]["missed"] == 1
    assert "(Dice > 0.1)" in split_lines(split)[0]
