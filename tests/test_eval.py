"""tadlab.eval against a loop-based re-implementation of the official ActivityNet evaluation, plus hand cases."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.data.schema import AnnotationWarning, detections_to_results, load_ground_truth, load_results
from tadlab.eval import ANET_TIOU, THUMOS_TIOU, DetectionMetrics, evaluate_detection, interpolated_ap, main, parse_tiou

sys.path.insert(0, str(Path(__file__).parent))
from anet_reference import average_precision_detection, interpolated_precision_recall, reference_evaluate

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers
def gt_json(videos: dict, durations=None) -> dict:
    """videos: id -> (subset, [(start, end, label), ...]); duration 100 s unless ``durations`` (id -> s) says."""
    durations = durations or {}
    return {"database": {vid: {"subset": subset, "duration": durations.get(vid, 100.0),
                               "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in anns]}
                         for vid, (subset, anns) in videos.items()}}


def res_json(videos: dict) -> dict:
    """videos: id -> [(start, end, label, score), ...]."""
    return {"results": {vid: [{"segment": [s, e], "label": lab, "score": sc} for s, e, lab, sc in dets]
                        for vid, dets in videos.items()}}


def random_world(rng: np.random.Generator, grid: float = 1.0, max_gt: int = 5, max_det: int = 12,
                 quirks: bool = False):
    """A small world built to collide: coarse grid times (tIoU ties, tIoU equal to thresholds, zero-length
    segments), few score values (score ties), duplicates, two subsets, unknown videos and labels. With ``quirks``
    every quirk of real files too: annotations ending and starting past their video's duration, starting (and
    predictions starting) below 0."""
    labels = [f"c{i}" for i in range(rng.integers(1, 5))]
    database, results, durations = {}, {}, {}
    low = -2 if quirks else 0
    num_videos = int(rng.integers(1, 6))
    for v in range(num_videos):
        anns = []
        for _ in range(rng.integers(0, max_gt + 1)):
            start = float(rng.integers(low, 10) * grid)
            anns.append((start, start + float(rng.integers(0, 6) * grid), str(rng.choice(labels))))
        if anns and rng.random() < 0.3:
            anns.append(anns[rng.integers(len(anns))])  # a duplicate instance
        database[f"v{v}"] = (str(rng.choice(["training", "validation"])), anns)
        if quirks:  # often shorter than its annotations reach (ActivityNet), even than where they start (THUMOS14)
            durations[f"v{v}"] = float(rng.integers(2, 16) * grid)
    for v in range(num_videos + 2):  # two videos the ground truth lacks
        dets = []
        for _ in range(rng.integers(0, max_det + 1)):
            start = float(rng.integers(low, 10) * grid)
            label = str(rng.choice(labels + ["unknown"])) if rng.random() < 0.95 else "unknown"
            dets.append((start, start + float(rng.integers(0, 6) * grid), label, float(rng.integers(0, 5) / 4)))
        if dets and rng.random() < 0.3:
            dets.append(dets[rng.integers(len(dets))])  # a duplicate prediction
        results[f"v{v}"] = dets
    return gt_json(database, durations), res_json(results)


def official_subset(ground_truth, options) -> str | None:
    """The subset tadlab scores by default: "validation" when the file has several subsets, else every video."""
    if "subset" in options:
        return options["subset"]
    subsets = {entry["subset"] for entry in ground_truth["database"].values()}
    return "validation" if len(subsets) > 1 and "validation" in subsets else None


def expected_refusal(ground_truth, results, subset, ignore) -> str | None:
    """What tadlab refuses to score with a number (the official code gives 0 or raises KeyError): no prediction
    on a scored video, or no prediction with a known label."""
    scored = {video for video, entry in ground_truth["database"].items()
              if (subset is None or entry["subset"] == subset) and video not in ignore}
    predicted = [(video, det["label"]) for video, dets in results["results"].items() if video not in ignore
                 for det in dets]
    labels = {ann["label"] for video, entry in ground_truth["database"].items() if video in scored
              for ann in entry["annotations"]}
    if predicted and not any(video in scored for video, _ in predicted):
        return "none of the .* video\\(s\\) in the results is a"
    if predicted and labels and not any(label in labels for _, label in predicted):
        return "no prediction has a label of the ground truth"
    return None


def assert_agrees(ground_truth, results, thresholds=ANET_TIOU, **options):
    """Compare per-class AP and mAP with the reference; returns the metrics (None if tadlab refuses, as checked)."""
    ref_options = dict(options)
    ref_options["subset"] = official_subset(ground_truth, options)
    if "ignore_videos" in ref_options and isinstance(ref_options["ignore_videos"], (str, Path)):
        ref_options["ignore_videos"] = _ids_of_file(ref_options["ignore_videos"])
    ref_ap, ref_map, ref_unknown = reference_evaluate(ground_truth, results, thresholds, **ref_options)
    if not ref_ap:
        with warnings.catch_warnings(), pytest.raises(ValueError, match="no annotated instances"):
            warnings.simplefilter("ignore")
            evaluate_detection(ground_truth, results, thresholds, **options)
        return None
    refusal = expected_refusal(ground_truth, results, ref_options["subset"], set(ref_options.get("ignore_videos", ())))
    if refusal:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match=refusal):
                evaluate_detection(ground_truth, results, thresholds, **options)
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_detection(ground_truth, results, thresholds, **options)
    assert metrics.class_names == tuple(sorted(ref_ap))
    assert metrics.subset == ref_options["subset"]
    for name, row in zip(metrics.class_names, metrics.ap):
        np.testing.assert_allclose(row, ref_ap[name], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(metrics.mAP, ref_map, rtol=0, atol=1e-9)
    assert metrics.average_mAP == pytest.approx(float(np.mean(ref_map)), abs=1e-9)
    assert metrics.num_ignored_predictions == ref_unknown
    assert len([w for w in caught if "not in the ground truth" in str(w.message)]) == (1 if ref_unknown else 0)
    kinds = [re.sub(r"[\d.]+|'[^']*'", "#", str(w.message)) for w in caught]
    assert len(kinds) == len(set(kinds)), kinds  # one warning per kind of quirk
    return metrics


def _ids_of_file(path):
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- agreement with the reference
def test_agrees_on_many_seeded_small_worlds():
    checked = 0
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        ground_truth, results = random_world(rng, grid=float(rng.choice([0.5, 1.0, 0.1])), quirks=seed % 4 == 0)
        options = [{"subset": None}, {"subset": "validation"}, {"subset": "training"}, {}][seed % 4]
        thresholds = THUMOS_TIOU if seed % 2 else ANET_TIOU
        checked += assert_agrees(ground_truth, results, thresholds, **options) is not None
    assert checked > 700


QUIRKS = {  # each real-file quirk on its own: (ground truth, predictions), video "v" of 100 s unless said
    "annotation ends past the duration": ([(53.76, 144.0, "a"), (10, 20, "a")], [(49.5, 144.0, "a", 0.9),
                                                                               (10, 21, "a", 0.5)], 143.15),
    "annotation starts past the duration": ([(101.0, 104.0, "a"), (5, 9, "a")], [(101.5, 104.0, "a", 0.8),
                                                                                 (5, 9, "a", 0.7)], 100.0),
    "start below 0": ([(-0.5, 4.0, "a"), (10, 12, "b")], [(-0.4, 4.0, "a", 0.6), (-1.0, 12.0, "b", 0.9),
                                                           (10, 12, "b", 0.3)], 100.0),
    "duplicate annotations and predictions": ([(0, 10, "a"), (0, 10, "a"), (20, 30, "a")],
                                              [(0, 10, "a", 0.9), (0, 10, "a", 0.9), (21, 30, "a", 0.4)], 100.0),
    "zero length": ([(5, 5, "a"), (10, 20, "a")], [(30, 30, "a", 0.9), (15, 15, "a", 0.8), (10, 19, "a", 0.2)],
                    100.0),
}


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_agrees_with_each_real_file_quirk(quirk, tmp_path, capsys):
    annotations, predictions, duration = QUIRKS[quirk]
    ground_truth = gt_json({"v": ("validation", annotations), "w": ("validation", [(1, 2, "b")])}, {"v": duration})
    results = res_json({"v": predictions})
    for thresholds in (ANET_TIOU, THUMOS_TIOU):
        metrics = assert_agrees(ground_truth, results, thresholds)
        assert metrics.average_mAP > 0
    # the same from files, through the command line
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(ground_truth))
    res_path.write_text(json.dumps(results))
    assert main([str(gt_path), str(res_path), "--json"]) == 0
    captured = capsys.readouterr()
    ref_map = reference_evaluate(ground_truth, results, ANET_TIOU, subset=None)[1]
    np.testing.assert_allclose(json.loads(captured.out)["mAP"], ref_map, rtol=0, atol=1e-9)
    assert "warning: " in captured.err  # the quirk is said


def test_agrees_on_a_medium_world_with_crowded_groups():
    # Up to ~40 instances of one class in a video: several group sizes and padding widths, rows long enough
    # that numpy's argsort is no longer an insertion sort, and many tIoU ties (integer times).
    rng = np.random.default_rng(7)
    labels = ["a", "b", "c"]
    database, results = {}, {}
    for v in range(12):
        anns = [(float(s), float(s + rng.integers(1, 8)), str(rng.choice(labels, p=[0.7, 0.2, 0.1])))
                for s in rng.integers(0, 90, rng.integers(1, 60))]
        database[f"v{v}"] = ("validation", anns)
        results[f"v{v}"] = [(float(s), float(s + rng.integers(0, 8)), str(rng.choice(labels)),
                             float(rng.integers(0, 20) / 20)) for s in rng.integers(0, 90, 80)]
    metrics = assert_agrees(gt_json(database), res_json(results))
    assert 0 < metrics.average_mAP < 1


def test_agrees_with_continuous_values_and_options():
    rng = np.random.default_rng(3)
    database, results = {}, {}
    for v in range(30):
        starts = rng.uniform(0, 80, rng.integers(1, 4))
        anns = [(float(s), float(s + rng.uniform(1, 19)), f"k{rng.integers(6)}") for s in starts]
        anns += anns[:1] if v % 5 == 0 else []
        database[f"v{v}"] = (["training", "validation"][v % 2], anns)
        results[f"v{v}"] = [(float(s), float(s + rng.uniform(0, 20)), f"k{rng.integers(7)}", float(rng.random()))
                            for s in rng.uniform(0, 80, 25)]
    ground_truth, res = gt_json(database), res_json(results)
    for options in ({}, {"subset": "validation"}, {"drop_duplicate_gt": True},
                    {"ignore_videos": ["v1", "v2", "v10", "nope"]}):
        assert_agrees(ground_truth, res, **options)


@settings(deadline=None, max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), grid=st.sampled_from([0.25, 1.0, 2.0]),
       subset=st.sampled_from([None, "validation"]), drop=st.booleans(),
       thresholds=st.sampled_from([ANET_TIOU, THUMOS_TIOU, np.array([0.0, 0.5, 1.0])]),
       ignore=st.lists(st.sampled_from(["v0", "v2", "v6"]), max_size=2))
def test_agrees_property(seed, grid, subset, drop, thresholds, ignore):
    ground_truth, results = random_world(np.random.default_rng(seed), grid=grid, max_gt=8, max_det=20, quirks=True)
    assert_agrees(ground_truth, results, thresholds, subset=subset, drop_duplicate_gt=drop, ignore_videos=ignore)


def test_row_argsort_matches_one_dimensional_argsort():
    # The vectorisation relies on this: argsort(axis=1) orders each row as the 1-D call does, ties included.
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 16, 17, 33, 70, 200):
        matrix = rng.integers(0, 3, (50, n)) / 4.0
        rows = np.argsort(matrix, axis=1)
        for row, order in zip(matrix, rows):
            np.testing.assert_array_equal(order, np.argsort(row.copy()))


def test_interpolated_ap_matches_the_loop():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        tp = rng.random((3, n)) < 0.5
        tp_cum = np.cumsum(tp, axis=1, dtype=float)
        precision, recall = tp_cum / np.arange(1, n + 1), tp_cum / max(1, tp.sum(axis=1).max())
        expected = [interpolated_precision_recall(p, r) for p, r in zip(precision, recall)]
        np.testing.assert_allclose(interpolated_ap(precision, recall), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- hand-worked cases
def test_hand_worked_precision_recall_curve():
    # Two instances; predictions by score: TP, FP, TP -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # Interpolated: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a"), (50, 60, "a")])})
    results = res_json({"v": [(0, 10, "a", 0.9), (20, 30, "a", 0.8), (50, 60, "a", 0.7)]})
    metrics = evaluate_detection(ground_truth, results)
    np.testing.assert_allclose(metrics.mAP, 5 / 6, rtol=0, atol=1e-12)
    assert average_precision_detection([("v", 0, 10), ("v", 50, 60)],
                                       [("v", 0, 10, 0.9), ("v", 20, 30, 0.8), ("v", 50, 60, 0.7)],
                                       [0.5])[0] == pytest.approx(5 / 6)


def test_greedy_matching_skips_locked_and_stops_below_threshold():
    # GT A = [0, 10], B = [8, 20]. p1 = [0, 12] takes A (tIoU 10/12). p2 = [0, 9] has tIoU 0.9 with A (locked,
    # skipped) and 1/20 with B (< 0.5, the search ends): a false positive, though an optimal matching could
    # not do better either. At 0.5: precision 1, 1/2 with recall 1/2, 1/2 -> AP 1/2.
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a"), (8, 20, "a")])})
    results = res_json({"v": [(0, 12, "a", 0.9), (0, 9, "a", 0.8)]})
    metrics = evaluate_detection(ground_truth, results, [0.5])
    assert metrics.ap[0, 0] == pytest.approx(0.5)


def test_prediction_takes_the_best_free_instance_not_the_first():
    # p1 = [10, 20] overlaps A = [0, 20] (tIoU 0.5) and B = [10, 21] (10/11): it must take B, leaving A for
    # p2 = [0, 20]; both true positives at 0.5 -> AP 1. A first-come matcher would give AP 1/2.
    ground_truth = gt_json({"v": ("validation", [(0, 20, "a"), (10, 21, "a")])})
    results = res_json({"v": [(10, 20, "a", 0.9), (0, 20, "a", 0.8)]})
    assert evaluate_detection(ground_truth, results, [0.5]).ap[0, 0] == pytest.approx(1.0)


def test_threshold_values_are_the_official_linspace():
    # tIoU exactly 0.4 (= 2/5): np.linspace(0.3, 0.7, 5)[1] is 0.39999999999999997, so it counts at "0.4".
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")])})
    results = res_json({"v": [(0, 4, "a", 1.0)]})
    metrics = evaluate_detection(ground_truth, results, THUMOS_TIOU)
    np.testing.assert_array_equal(metrics.mAP, [1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(parse_tiou("0.3:0.7:0.1"), THUMOS_TIOU)
    np.testing.assert_array_equal(parse_tiou("0.5:0.95:0.05"), ANET_TIOU)


def test_score_ties_follow_reversed_argsort():
    # Same score: the visiting order is np.argsort(scores)[::-1] over the class's predictions in file order.
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")])})
    results = res_json({"v": [(50, 60, "a", 0.5), (0, 10, "a", 0.5)]})  # FP first in the file, then the TP
    tp_first = np.argsort(np.array([0.5, 0.5]))[::-1][0] == 1
    expected = 1.0 if tp_first else 0.5
    assert evaluate_detection(ground_truth, results, [0.5]).ap[0, 0] == pytest.approx(expected)
    assert_agrees(ground_truth, results)


def test_tiou_ties_and_duplicate_predictions():
    # Two identical predictions on [0, 10]: the second is a false positive. [5, 15] has tIoU 1/3 with both
    # instances: at 0.3 it skips the locked [0, 10] and takes [10, 20] (precision 1, 1/2, 2/3 at recall 1/2, 1/2,
    # 1 -> AP 5/6); at 0.5 it is a false positive (AP 1/2).
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a"), (10, 20, "a")])})
    results = res_json({"v": [(0, 10, "a", 0.9), (0, 10, "a", 0.9), (5, 15, "a", 0.3)]})
    metrics = assert_agrees(ground_truth, results, np.array([0.3, 0.5]))
    np.testing.assert_allclose(metrics.ap[0], [5 / 6, 0.5], rtol=0, atol=1e-12)


def test_duplicate_ground_truth_and_the_drop_switch():
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a"), (0, 10, "a")])})
    results = res_json({"v": [(0, 10, "a", 0.9)]})
    with pytest.warns(AnnotationWarning, match="1 annotation.* repeat another"):
        assert evaluate_detection(ground_truth, results, [0.5]).ap[0, 0] == pytest.approx(0.5)  # npos = 2
    with pytest.warns(AnnotationWarning, match="repeat another"):
        assert evaluate_detection(ground_truth, results, [0.5], drop_duplicate_gt=True).ap[0, 0] == pytest.approx(1.0)
    assert_agrees(ground_truth, results, drop_duplicate_gt=True)


def test_class_without_predictions_counts_zero_and_empty_video_is_fine():
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a"), (20, 30, "b")]), "w": ("validation", [])})
    results = res_json({"v": [(0, 10, "a", 0.9)], "w": []})
    metrics = evaluate_detection(ground_truth, results, [0.5])
    assert metrics.class_names == ("a", "b")
    np.testing.assert_allclose(metrics.ap[:, 0], [1.0, 0.0])
    assert metrics.mAP[0] == pytest.approx(0.5)
    empty = evaluate_detection(ground_truth, {"results": {}}, [0.5])
    assert empty.average_mAP == 0.0 and empty.num_predictions == 0


def test_unknown_videos_and_wrong_class_in_video_are_false_positives():
    # The FP on an unknown video outranks the TP: precision 0, 1/2 -> AP 1/2. A class-b prediction on v (which
    # has no b) is a false positive of class b.
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")]), "u": ("validation", [(0, 10, "b")])})
    results = res_json({"elsewhere": [(0, 10, "a", 0.9)], "v": [(0, 10, "a", 0.5), (0, 10, "b", 0.95)],
                        "u": [(0, 10, "b", 0.4)]})
    metrics = assert_agrees(ground_truth, results, [0.5])
    np.testing.assert_allclose(metrics.ap[:, 0], [0.5, 0.5])


def test_subset_keeps_other_subset_predictions_as_false_positives():
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")]), "t": ("training", [(0, 10, "a")])})
    results = res_json({"t": [(0, 10, "a", 0.9)], "v": [(0, 10, "a", 0.5)]})
    with pytest.warns(UserWarning, match=r"1 prediction\(s\) on 1 video\(s\) that are not a video of subset "
                                         r"'validation' \(1 of subset\(s\) \['training'\]\) count as false positives"):
        assert evaluate_detection(ground_truth, results, [0.5], subset="validation").ap[0, 0] == pytest.approx(0.5)
    with pytest.warns(UserWarning, match="not a video of subset 'validation'"):  # the default subset
        assert evaluate_detection(ground_truth, results, [0.5], subset="auto").ap[0, 0] == pytest.approx(0.5)
    assert evaluate_detection(ground_truth, results, [0.5], subset=None).ap[0, 0] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="not a video of subset 'training'"):
        assert evaluate_detection(ground_truth, results, [0.5], subset="training").ap[0, 0] == pytest.approx(1.0)


def test_unknown_labels_are_ignored_with_one_counting_warning():
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")])})
    results = res_json({"v": [(0, 10, "a", 0.5), (0, 10, "zebra", 0.9), (3, 4, "yak", 0.1)],
                        "w": [(1, 2, "zebra", 0.3)]})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        metrics = evaluate_detection(ground_truth, results)
    assert any(re.search(r"ignored 3 prediction.*2 label.*the official evaluation stops with a KeyError on such a "
                         r"file, tadlab leaves them out", str(w.message)) for w in record)
    assert len([w for w in record if "not in the ground truth" in str(w.message)]) == 1
    assert len([w for w in record if "that the ground truth lacks, e.g. 'w'" in str(w.message)]) == 1
    assert metrics.num_ignored_predictions == 3 and metrics.num_predictions == 1
    np.testing.assert_allclose(metrics.mAP, 1.0)


def test_zero_length_segments_follow_the_official_nan():
    # Two zero-length segments, wherever they are, have tIoU 0/0 = nan, never "< threshold": the official code
    # counts [30, 30] as a true positive of the instance [5, 5]. [15, 15] then visits the locked [5, 5] (nan
    # sorts first) and [10, 20] (tIoU 0): a false positive. Precision 1, 1/2 at recall 1/2 -> AP 1/2.
    ground_truth = gt_json({"v": ("validation", [(5, 5, "a"), (10, 20, "a")])})
    results = res_json({"v": [(30, 30, "a", 0.9), (15, 15, "a", 0.8)]})
    metrics = assert_agrees(ground_truth, results)
    np.testing.assert_allclose(metrics.mAP, 0.5)


def test_ignore_videos_from_iterable_and_files(tmp_path):
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")]), "x": ("validation", [(0, 10, "a")]),
                            "y": ("validation", [(0, 10, "b")])})
    results = res_json({"v": [(0, 10, "a", 0.5)], "x": [(50, 60, "a", 0.9)], "y": [(0, 10, "a", 0.95)]})
    lines, listed = tmp_path / "blocked.txt", tmp_path / "blocked.json"
    lines.write_text("x\n\ny\n")
    listed.write_text(json.dumps(["x", "y"]))
    for ignore in (["x", "y"], ("x", "y"), lines, str(listed)):
        metrics = assert_agrees(ground_truth, results, ignore_videos=ignore)
        assert metrics.class_names == ("a",) and metrics.mAP[0] == pytest.approx(1.0)
    assert evaluate_detection(ground_truth, results, [0.5]).ap[0, 0] < 1.0  # without the list


def test_loaded_objects_and_detections_to_results_are_accepted():
    rng = np.random.default_rng(5)
    ground_truth, results = random_world(rng)
    while not any(v["annotations"] for v in ground_truth["database"].values()):
        ground_truth, results = random_world(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels of the random world missing from its ground truth
        from_dicts = evaluate_detection(ground_truth, results, subset=None)
        loaded = evaluate_detection(load_ground_truth(ground_truth), load_results(results), subset=None)
    np.testing.assert_array_equal(from_dicts.ap, loaded.ap)
    # A detector's output in snippet units (T = 100 snippets over 100 s: one snippet per second).
    detections = [{"segments": np.array([[0.0, 10.0]]), "scores": np.array([0.7]), "labels": np.array([0])}]
    converted = detections_to_results(detections, ["v"], [100.0], 100, ["a"])
    metrics = evaluate_detection(gt_json({"v": ("validation", [(0, 10, "a")])}), converted)
    assert isinstance(metrics, DetectionMetrics) and metrics.average_mAP == pytest.approx(1.0)


# ---------------------------------------------------------------- command line
@pytest.fixture
def json_files(tmp_path):
    ground_truth = gt_json({"v1": ("validation", [(0, 10, "Long jump"), (50, 60, "a")]),
                            "v2": ("training", [(0, 10, "a")])})
    results = res_json({"v1": [(0, 10, "Long jump", 0.9), (48, 60, "a", 0.8)], "v2": [(0, 10, "a", 0.7)]})
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(ground_truth))
    res_path.write_text(json.dumps(results))
    return gt_path, res_path


def test_cli_json(json_files, capsys):
    gt_path, res_path = json_files
    assert main([str(gt_path), str(res_path), "--json", "--subset", "validation", "--per-class"]) == 0
    out = json.loads(capsys.readouterr().out)
    with pytest.warns(UserWarning, match="count as false positives"):  # v2 is a training video
        expected = evaluate_detection(gt_path, res_path, subset="validation")
    assert out["mAP"] == expected.mAP.tolist() and out["average_mAP"] == expected.average_mAP
    assert out["tiou_thresholds"] == ANET_TIOU.tolist()
    assert set(out["per_class_ap"]) == {"Long jump", "a"}
    assert main([str(gt_path), str(res_path), "--json", "--tiou", "0.3:0.7:0.1"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["tiou_thresholds"] == THUMOS_TIOU.tolist() and "per_class_ap" not in out
    assert out["subset"] == "validation" and "scored subset 'validation', the official default" in captured.err
    assert main([str(gt_path), str(res_path), "--json", "--subset", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["subset"] is None


def test_cli_table_via_subprocess(json_files):
    gt_path, res_path = json_files
    done = subprocess.run([sys.executable, "-m", "tadlab.eval", str(gt_path), str(res_path), "--tiou", "0.5,0.7"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ActivityNet detection mAP (%), subset 'validation'")
    assert lines[1].split() == ["tIoU", "0.50", "0.70", "avg"]
    assert "warning: 1 prediction(s) on 1 video(s) that are not a video of subset 'validation'" in done.stderr
    with pytest.warns(UserWarning, match="count as false positives"):
        metrics = evaluate_detection(gt_path, res_path, [0.5, 0.7])
    assert lines[2].split() == ["mAP"] + [f"{100 * v:.2f}" for v in metrics.mAP] + [f"{100 * metrics.average_mAP:.2f}"]
    assert any(line.startswith("Long jump") for line in lines) and "AP per class" in done.stdout


def test_cli_bad_input_exits_with_a_message(json_files, capsys):
    gt_path, res_path = json_files
    with pytest.raises(SystemExit) as exit_info:
        main([str(gt_path), str(res_path), "--tiou", "0.5-0.95"])
    assert exit_info.value.code == 2 and "tiou" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(gt_path / "missing.json"), str(res_path)])
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(gt_path), str(res_path), "--subset", "testing"])
    assert "subset 'testing'" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("spec", ["0.5:0.95", "abc", "0.5:0.95:0.07", "0.95:0.5:0.05", "1.5", "", "0.5:0.95:0"])
def test_parse_tiou_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="tiou"):
        parse_tiou(spec)


def test_bad_arguments_name_themselves(tmp_path):
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")])})
    results = res_json({"v": [(0, 10, "a", 0.5)]})
    with pytest.raises(ValueError, match="tiou_thresholds"):
        evaluate_detection(ground_truth, results, [0.5, 1.2])
    with pytest.raises(TypeError, match="tiou_thresholds"):
        evaluate_detection(ground_truth, results, object())
    with pytest.raises(TypeError, match="subset"):
        evaluate_detection(ground_truth, results, subset=1)
    with pytest.raises(ValueError, match="subset 'testing'.*validation"):
        evaluate_detection(ground_truth, results, subset="testing")
    with pytest.raises(TypeError, match="drop_duplicate_gt"):
        evaluate_detection(ground_truth, results, drop_duplicate_gt="yes")
    with pytest.raises(ValueError, match="ignore_videos"):
        evaluate_detection(ground_truth, results, ignore_videos=tmp_path / "nope.txt")
    with pytest.raises(TypeError, match="ignore_videos"):
        evaluate_detection(ground_truth, results, ignore_videos=5)
    with pytest.raises(TypeError, match="ground_truth"):
        evaluate_detection([1, 2], results)
    with pytest.raises(TypeError, match="results"):
        evaluate_detection(ground_truth, 3.0)


def test_data_errors_name_video_and_field():
    ground_truth = gt_json({"v": ("validation", [(0, 10, "a")])})
    bad_score = {"results": {"v": [{"segment": [0, 10], "label": "a", "score": float("nan")}]}}
    with pytest.raises(ValueError, match="'v'.*score"):
        evaluate_detection(ground_truth, bad_score)
    bad_segment = res_json({"w": [(10, 5, "a", 0.5)]})
    with pytest.raises(ValueError, match="'w'.*start > end"):
        evaluate_detection(ground_truth, bad_segment)
    missing = {"database": {"v": {"subset": "validation", "annotations": []}}}
    with pytest.raises(ValueError, match="'v'.*duration"):
        evaluate_detection(missing, res_json({}))
