"""Dataset statistics on a hand-made ground truth, every row worked out by hand."""
import math

import pytest

from tadlab.data.statistics import dataset_statistics


def _video(subset, duration, *annotations):
    return {"subset": subset, "duration": duration,
            "annotations": [{"segment": [s, e], "label": label} for s, e, label in annotations]}


GROUND_TRUTH = {"database": {
    # 100 s: three "jump" instances with gaps 2 s and 5 s, and a "run" overlapping the last jump.
    "a": _video("validation", 100.0, (10, 20, "jump"), (22, 30, "jump"), (35, 45, "jump"), (40, 50, "run")),
    # 50 s, one instance covering 90 % of the video.
    "b": _video("validation", 50.0, (2, 47, "swim")),
    # 40 s: two "swim" instances 0.5 s apart; the second is a 1 % sliver.
    "c": _video("validation", 40.0, (0, 10, "swim"), (10.5, 10.9, "swim")),
    "d": _video("validation", 30.0),  # no annotation: counts in videos and duration only
    "e": _video("training", 10.0, (0, 1, "x")),  # another subset
}}


def test_every_row_on_a_hand_made_ground_truth():
    stats = dataset_statistics(GROUND_TRUTH, subset="validation")
    assert stats["videos"] == 4 and stats["instances"] == 7
    assert stats["mean_duration"] == pytest.approx((100 + 50 + 40 + 30) / 4)
    assert stats["single_class_videos"] == pytest.approx(2 / 3)  # a has two classes
    # Consecutive pairs by start: a: jump-jump, jump-jump, jump-run; c: swim-swim -> 3 of 4 same class.
    assert stats["same_class_consecutive"] == pytest.approx(3 / 4)
    # Same-class gaps: a: 2 s, 5 s; c: 0.5 s.
    assert stats["gap_median"] == pytest.approx(2.0)
    assert stats["gap_under_1s"] == pytest.approx(1 / 3) and stats["gap_under_3s"] == pytest.approx(2 / 3)
    assert stats["gap_median_fraction"] == pytest.approx(0.02)  # fractions 0.02, 0.05, 0.0125
    assert stats["instances_per_video_mean"] == pytest.approx(7 / 3)
    assert stats["instances_per_video_median"] == 2 and stats["instances_per_video_max"] == 4
    assert stats["instances_per_video_share"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(1 / 3),
                                                  "3-4": pytest.approx(1 / 3), "5-8": 0.0, ">8": 0.0}
    fractions = [0.1, 0.08, 0.1, 0.1, 0.9, 0.25, 0.01]
    assert stats["length_fraction_mean"] == pytest.approx(sum(fractions) / 7)
    assert stats["length_fraction_median"] == pytest.approx(0.1)
    assert stats["length_under_2pct"] == pytest.approx(1 / 7) and stats["length_over_80pct"] == pytest.approx(1 / 7)
    # Union: a covers [10, 20) + [22, 30) + [35, 50) = 33 s of 100; b 45 of 50; c 10.4 of 40.
    assert stats["action_fraction"] == pytest.approx((0.33 + 0.9 + 0.26) / 3)
    # The last jump and the run overlap each other: 2 of 7 instances, neither with its own class.
    assert stats["overlapping_instances"] == pytest.approx(2 / 7) and stats["overlapping_same_class"] == 0.0


def test_subset_none_takes_every_video_and_rows_without_pairs_are_nan():
    stats = dataset_statistics(GROUND_TRUTH)
    assert stats["videos"] == 5 and stats["instances"] == 8
    single = dataset_statistics({"database": {"v": _video("validation", 10.0, (1, 2, "x"))}})
    assert math.isnan(single["gap_median"]) and math.isnan(single["same_class_consecutive"])
    assert single["overlapping_instances"] == 0.0 and math.isnan(single["overlapping_same_class"])


def test_a_subset_without_annotations_is_named():
    with pytest.raises(ValueError, match=r"no annotated video in subset 'testing'.*\['training', 'validation'\]"):
        dataset_statistics(GROUND_TRUTH, subset="testing")


def test_statistics_table_puts_sources_side_by_side():
    from tadlab.data.statistics import TABLE_ROWS, statistics_table

    stats = dataset_statistics(GROUND_TRUTH, subset="validation")
    single = dataset_statistics({"database": {"v": _video("validation", 10.0, (1, 2, "x"))}})
    lines = statistics_table({"hand-made": stats, "one video": single}).splitlines()
    assert len(lines) == 1 + len(TABLE_ROWS) and "hand-made" in lines[0] and "one video" in lines[0]
    row = next(line for line in lines if line.startswith("videos with a single class"))
    assert row.split()[-2:] == ["67%", "100%"]
    assert next(line for line in lines if line.startswith("same-class gap: median")).endswith("n/a")
    assert "33/33/33/0/0 %" in next(line for line in lines if line.startswith("videos with 1 / 2"))
