"""tadlab.eval.evaluate_proposals (AR@AN) against a loop re-implementation of the official algorithm, plus hand cases."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.data.schema import detections_to_results, load_results
from tadlab.eval import ANET_TIOU, ProposalMetrics, evaluate_proposals, main

sys.path.insert(0, str(Path(__file__).parent))
from anet_proposal_reference import reference_proposals

REPO = Path(__file__).resolve().parents[1]


def random_case(rng: np.random.Generator, grid: float = 1.0, max_gt: int = 4, max_proposals: int = 30):
    """Coarse times (tIoU ties and tIoU equal to thresholds, zero-length segments), four score values (ties), two
    subsets, videos without annotations, videos without proposals (absent or an empty list), proposals of videos
    the ground truth lacks, labels present or not, times past the duration and below 0."""
    database, results = {}, {}
    num_videos = int(rng.integers(1, 8))
    for v in range(num_videos):
        annotations = []
        for _ in range(rng.integers(0, max_gt + 1)):
            start = float(rng.integers(-1, 10) * grid)
            annotations.append({"segment": [start, start + float(rng.integers(0, 6) * grid)], "label": "a"})
        database[f"v{v}"] = {"subset": str(rng.choice(["training", "validation"])),
                             "duration": float(rng.integers(3, 14) * grid), "annotations": annotations}
    for v in range(num_videos + 2):  # two videos the ground truth lacks
        if rng.random() < 0.2:
            continue  # no entry at all
        rows = []
        for _ in range(rng.integers(0, max_proposals + 1)):
            start = float(rng.integers(-1, 10) * grid)
            row = {"segment": [start, start + float(rng.integers(0, 6) * grid)], "score": float(rng.integers(0, 4) / 4)}
            if rng.random() < 0.5:
                row["label"] = "a"
            rows.append(row)
        results[f"v{v}"] = rows
    return {"database": database}, {"results": results}


def assert_agrees(ground_truth, proposals, thresholds=ANET_TIOU, max_proposals=100, subset="validation", ignore=()):
    """Compare the whole curve with the reference; returns the metrics (None where both cannot score)."""
    try:
        reference = reference_proposals(ground_truth, proposals, thresholds, max_avg=max_proposals, subset=subset,
                                        ignore_videos=ignore)
    except (ZeroDivisionError, KeyError):  # no instance, no proposal, or none kept: the official code stops
        reference = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quirks and proposals on other videos, checked elsewhere
        if reference is None:
            with pytest.raises(ValueError):
                evaluate_proposals(ground_truth, proposals, max_proposals, thresholds, subset=subset,
                                   ignore_videos=list(ignore))
            return None
        metrics = evaluate_proposals(ground_truth, proposals, max_proposals, thresholds, subset=subset,
                                     ignore_videos=list(ignore))
    recall, average, per_video, area = reference
    np.testing.assert_allclose(metrics.recall, recall, rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics.average_recall, average, rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics.proposals_per_video, per_video, rtol=0, atol=1e-9)
    assert metrics.auc == pytest.approx(area / per_video[-1], abs=1e-9)
    return metrics


def test_agrees_on_many_seeded_cases():
    scored = 0
    for seed in range(250):
        rng = np.random.default_rng(seed)
        ground_truth, proposals = random_case(rng, grid=float(rng.choice([0.5, 1.0, 0.1])))
        max_proposals = [100, None, 1, 3, 7.5][seed % 5]
        thresholds = [ANET_TIOU, np.array([0.0, 0.5, 1.0]), np.array([0.3])][seed % 3]
        subset = ["validation", None][seed % 2]
        scored += assert_agrees(ground_truth, proposals, thresholds, max_proposals, subset) is not None
    assert scored > 150


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), grid=st.sampled_from([0.25, 1.0]),
       max_proposals=st.sampled_from([100, None, 2, 0.5]), subset=st.sampled_from([None, "validation"]),
       ignore=st.lists(st.sampled_from(["v0", "v2", "v7"]), max_size=2))
def test_agrees_property(seed, grid, max_proposals, subset, ignore):
    ground_truth, proposals = random_case(np.random.default_rng(seed), grid=grid, max_gt=6, max_proposals=60)
    assert_agrees(ground_truth, proposals, ANET_TIOU, max_proposals, subset, tuple(ignore))


def test_agrees_with_many_proposals_per_video_and_continuous_times():
    # 100+ proposals per video: rows long enough that argsort is no longer an insertion sort, many score ties.
    rng = np.random.default_rng(11)
    database, results = {}, {}
    for v in range(40):
        duration = float(rng.uniform(20, 200))
        starts = rng.uniform(0, duration * 0.8, rng.integers(1, 5))
        database[f"v{v}"] = {"subset": "validation", "duration": duration,
                             "annotations": [{"segment": [s, s + rng.uniform(1, duration * 0.2)], "label": "x"}
                                             for s in starts]}
        count = int(rng.choice([100, 100, 150, 37]))
        results[f"v{v}"] = [{"segment": sorted(rng.uniform(0, duration, 2).tolist()),
                             "score": float(rng.integers(0, 50) / 50)} for _ in range(count)]
    for max_proposals in (100, 10, None):
        metrics = assert_agrees({"database": database}, {"results": results}, ANET_TIOU, max_proposals)
        assert 0 < metrics.auc < 1 and np.all(np.diff(metrics.average_recall) >= 0)


def test_hand_worked_curve():
    # Two videos, max 2 proposals per video, 4 proposals in the file: ratio 1, every proposal kept.
    # a: instance [0, 10], proposals by score [0, 10] (tIoU 1), [20, 30] (0). b: instances [0, 10] and [10, 20],
    # proposals [10, 20] (tIoU 0 with [0, 10], 1 with [10, 20]) and [0, 4] (0.4, 0).
    # Curve point j looks at int(2 * (j + 1) / 100) proposals: none before j = 49, one from 49, two at 99.
    # With one: a's instance and b's [10, 20] are found, 2 of 3 at every threshold; with two at t = 0.3 also
    # b's [0, 10] (tIoU 0.4): 3 of 3; at t >= 0.5 still 2 of 3.
    ground_truth = {"database": {
        "a": {"subset": "validation", "duration": 60.0, "annotations": [{"segment": [0, 10], "label": "x"}]},
        "b": {"subset": "validation", "duration": 60.0, "annotations": [{"segment": [0, 10], "label": "x"},
                                                                         {"segment": [10, 20], "label": "x"}]}}}
    proposals = {"results": {"a": [{"segment": [20, 30], "score": 0.1}, {"segment": [0, 10], "score": 0.9}],
                             "b": [{"segment": [10, 20], "score": 0.8}, {"segment": [0, 4], "score": 0.7}]}}
    metrics = evaluate_proposals(ground_truth, proposals, max_proposals=2, tiou_thresholds=[0.3, 0.5])
    np.testing.assert_allclose(metrics.recall[:, :49], 0.0)
    np.testing.assert_allclose(metrics.recall[:, 49:99], 2 / 3)
    np.testing.assert_allclose(metrics.recall[:, 99], [1.0, 2 / 3])
    np.testing.assert_allclose(metrics.proposals_per_video, np.arange(1, 101) / 50)
    assert metrics.ar_at(1) == pytest.approx(2 / 3) and metrics.ar_at(2) == pytest.approx(5 / 6)
    assert metrics.ar_at(100) is None and metrics.ar_at(3) is None  # not points of a curve that ends at 2
    assert metrics.auc == pytest.approx(np.trapezoid(metrics.average_recall, metrics.proposals_per_video) / 2)
    assert (metrics.num_videos, metrics.num_ground_truth, metrics.num_proposals) == (2, 3, 4)
    assert_agrees(ground_truth, proposals, np.array([0.3, 0.5]), max_proposals=2)


def test_quirks_of_the_official_algorithm():
    instance = {"subset": "validation", "duration": 60.0, "annotations": [{"segment": [0, 10], "label": "x"}]}
    ground_truth = {"database": {"a": instance, "b": instance, "empty": {**instance, "annotations": []},
                                 "t": {**instance, "subset": "training"}}}
    hit = [{"segment": [0, 10], "score": 0.5}]
    # Proposals of videos outside the scored ones count in the ratio: 4 proposals over 2 scored videos with a
    # maximum of 1 per video gives ratio 1/2, so 'a' keeps int(1 * 0.5) = 0 of its one proposal.
    proposals = {"results": {"a": hit, "b": hit, "t": hit, "elsewhere": hit}}
    with pytest.warns(UserWarning, match=r"2 prediction\(s\) on 2 video\(s\) .* are never matched but count in the "
                                         r"number of proposals per video"):
        with pytest.raises(ValueError, match="no proposal is kept"):
            evaluate_proposals(ground_truth, proposals, max_proposals=1)
    # Ranked by score: the better-scored proposal is looked at first.
    ranked = {"results": {"a": [{"segment": [30, 40], "score": 0.2}, {"segment": [0, 10], "score": 0.9}],
                          "b": [{"segment": [0, 10], "score": 0.9}, {"segment": [30, 40], "score": 0.2}]}}
    assert evaluate_proposals(ground_truth, ranked, max_proposals=2).ar_at(1) == pytest.approx(1.0)
    # The videos are those with instances: 'empty' plays no part, its proposals only count in P.
    assert evaluate_proposals(ground_truth, ranked, max_proposals=2).num_videos == 2
    # A video without proposals is scored as one column of tIoU 0: found at threshold 0, not above.
    only_a = {"results": {"a": hit}}
    at_zero = evaluate_proposals(ground_truth, only_a, max_proposals=1, tiou_thresholds=[0.0, 0.5])
    np.testing.assert_allclose(at_zero.recall[:, -1], [1.0, 0.5])


def test_in_memory_results_and_loaded_objects_are_accepted():
    rng = np.random.default_rng(3)
    ground_truth, proposals = random_case(rng)
    while not any(v["annotations"] and v["subset"] == "validation" for v in ground_truth["database"].values()):
        ground_truth, proposals = random_case(rng)
    for rows in proposals["results"].values():
        for row in rows:
            row["label"] = "a"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_dict = evaluate_proposals(ground_truth, proposals, subset="validation")
        loaded = evaluate_proposals(ground_truth, load_results(proposals), subset="validation")
    np.testing.assert_array_equal(from_dict.recall, loaded.recall)
    # A detector's output in snippet units (T = 100 snippets over 100 s).
    detections = [{"segments": np.array([[0.0, 10.0], [50.0, 60.0]]), "scores": np.array([0.4, 0.7]),
                   "labels": np.array([0, 0])}]
    truth = {"database": {"v": {"subset": "testing", "duration": 100.0,
                                "annotations": [{"segment": [0, 10], "label": "a"}]}}}
    metrics = evaluate_proposals(truth, detections_to_results(detections, ["v"], [100.0], 100, ["a"]))
    assert isinstance(metrics, ProposalMetrics) and metrics.subset is None
    assert metrics.ar_at(1) == 0.0 and metrics.ar_at(100) == 1.0  # the better-scored one misses


def test_arguments_are_checked():
    ground_truth, proposals = random_case(np.random.default_rng(0))
    for bad in (0, -3, float("nan"), True, "100"):
        with pytest.raises(ValueError, match="max_proposals must be a positive number"):
            evaluate_proposals(ground_truth, proposals, max_proposals=bad)
    truth = {"database": {"v": {"subset": "validation", "duration": 9.0,
                                "annotations": [{"segment": [0, 1], "label": "a"}]}}}
    with pytest.raises(ValueError, match="holds no proposal"):
        evaluate_proposals(truth, {"results": {"v": []}})
    with pytest.raises(ValueError, match=r"none of the 1 video\(s\) in the results is a ground-truth video.*'v_' "
                                         r"prefix that the ground truth's lack"):
        evaluate_proposals(truth, {"results": {"v_v": [{"segment": [0, 1], "score": 1.0}]}})
    with pytest.raises(ValueError, match=r"detections\[0\]: missing field 'score'"):
        evaluate_proposals(truth, {"results": {"v": [{"segment": [0, 1]}]}})


@pytest.fixture
def files(tmp_path):
    truth = {"database": {"v1": {"subset": "validation", "duration": 30.0,
                                 "annotations": [{"segment": [0, 10], "label": "a"}]},
                          "v2": {"subset": "validation", "duration": 30.0,
                                 "annotations": [{"segment": [5, 15], "label": "b"}]},
                          "v3": {"subset": "training", "duration": 30.0,
                                 "annotations": [{"segment": [5, 15], "label": "b"}]}}}
    proposals = {"results": {"v1": [{"segment": [0, 9], "score": 0.9}, {"segment": [20, 30], "score": 0.5}],
                             "v2": [{"segment": [0, 30], "score": 0.8}, {"segment": [6, 15], "score": 0.3}]}}
    paths = tmp_path / "gt.json", tmp_path / "proposals.json"
    for path, data in zip(paths, (truth, proposals)):
        path.write_text(json.dumps(data))
    return paths


def test_command_line_json(files, capsys):
    gt_path, proposals_path = files
    assert main([str(gt_path), str(proposals_path), "--proposals", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert {"AR@1", "AR@5", "AR@10", "AR@100", "AUC", "average_recall", "proposals_per_video"} <= set(out)
    expected = evaluate_proposals(gt_path, proposals_path)
    assert out["AR@100"] == expected.ar_at(100) and out["AUC"] == expected.auc
    assert out["average_recall"] == expected.average_recall.tolist() and len(out["proposals_per_video"]) == 100
    assert out["subset"] == "validation" and "scored subset 'validation'" in captured.err
    assert main([str(gt_path), str(proposals_path), "--proposals", "--json", "--max-proposals", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["AR@1"] == evaluate_proposals(gt_path, proposals_path, max_proposals=2).ar_at(1)
    assert out["AR@100"] is None and out["max_proposals"] == 2.0


def test_command_line_table_via_subprocess(files):
    gt_path, proposals_path = files
    done = subprocess.run([sys.executable, "-m", "tadlab.eval", str(gt_path), str(proposals_path), "--proposals",
                           "--max-proposals", "all", "--subset", "all"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ActivityNet proposals AR@AN (%), all subsets: 3 videos, 3 ground-truth instances, "
                               "4 proposals")
    metrics = evaluate_proposals(gt_path, proposals_path, max_proposals=None, subset=None)
    assert lines[1].split() == ["AR@1", "AUC"]  # the curve ends at 4/3 per video: 1 is its point 75, 5 is none
    assert lines[2].split() == [f"{100 * metrics.ar_at(1):.2f}", f"{100 * metrics.auc:.2f}"]
    bad = subprocess.run([sys.executable, "-m", "tadlab.eval", str(gt_path), str(proposals_path), "--proposals",
                          "--max-proposals", "many"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--max-proposals must be a positive number or 'all'" in bad.stderr
