"""Class-map grouping: runs, candidates and detections on hand-made class maps."""
import pytest
import torch

from tadlab.grouping import activation_runs, class_map_candidates, group_class_map


def class_map(action_rows):
    """(1, K+1, T) probabilities from K action rows; background = 1 - their sum (rows must sum to <= 1)."""
    action = torch.tensor(action_rows, dtype=torch.float32)
    return torch.cat([action, 1 - action.sum(0, keepdim=True)])[None]


def test_activation_runs_lists_every_run_in_row_major_order():
    active = torch.tensor([[[1, 1, 0, 1], [0, 0, 0, 0]], [[0, 1, 1, 1], [1, 0, 1, 0]]], dtype=torch.bool)
    rows, start, end = activation_runs(active)
    assert rows.tolist() == [[0, 0], [0, 0], [1, 0], [1, 1], [1, 1]]
    assert start.tolist() == [0, 3, 1, 0, 2] and end.tolist() == [2, 4, 4, 1, 3]


def test_candidates_are_runs_at_every_threshold_scored_by_the_mean():
    #                  t:  0    1    2    3    4    5
    probs = class_map([[0.1, 0.8, 0.6, 0.2, 0.9, 0.1]])
    video, label, start, end, score = class_map_candidates(probs, thresholds=(0.5, 0.7), score="mean")
    found = sorted(zip(start.tolist(), end.tolist(), score.tolist()))
    # theta 0.5: [1, 3) and [4, 5); theta 0.7: [1, 2) and [4, 5) (the latter found twice, kept once).
    assert [(s, e) for s, e, _ in found] == [(1, 2), (1, 3), (4, 5)]
    assert [round(x, 4) for _, _, x in found] == [0.8, 0.7, 0.9]
    assert video.tolist() == [0, 0, 0] and label.tolist() == [0, 0, 0]


def test_two_same_class_instances_with_a_high_gap_merge_into_one_run():
    # Grouping cannot split instances whose gap stays above the threshold: the point of masks and proposals.
    probs = class_map([[0.9, 0.9, 0.6, 0.9, 0.9]])
    _, _, start, end, _ = class_map_candidates(probs, thresholds=(0.5,))
    assert list(zip(start.tolist(), end.tolist())) == [(0, 5)]


def test_classes_and_videos_stay_apart():
    a = class_map([[0.8, 0.8, 0.0, 0.0], [0.0, 0.0, 0.8, 0.8]])
    b = class_map([[0.0, 0.0, 0.0, 0.0], [0.8, 0.0, 0.0, 0.0]])
    detections = group_class_map(torch.cat([a, b]), thresholds=(0.5,))
    first = sorted(zip(detections[0]["segments"].tolist(), detections[0]["labels"].tolist()))
    assert first == [([0.0, 2.0], 0), ([2.0, 4.0], 1)]
    assert detections[1]["segments"].tolist() == [[0.0, 1.0]] and detections[1]["labels"].tolist() == [1]
    assert detections[0]["labels"].dtype == torch.int64


def test_contrast_prefers_a_whole_instance_to_its_core():
    #                    t:  0    1    2     3    4    5    6    7
    probs = class_map([[0.2, 0.6, 0.95, 0.6, 0.2, 0.0, 0.7, 0.7]])
    _, _, start, end, score = class_map_candidates(probs, thresholds=(0.5, 0.9))
    found = dict(zip(zip(start.tolist(), end.tolist()), [round(x, 4) for x in score.tolist()]))
    # [2, 3): 0.95 inside, flanks of one snippet 0.6 and 0.6; [1, 4): 0.7167 inside, flanks 0.2 and 0.2;
    # [6, 8): 0.7 inside, flanks 0.0 and past the end (0).
    assert found == {(2, 3): 0.35, (1, 4): 0.5167, (6, 8): 0.7}
    (det,) = group_class_map(probs, thresholds=(0.5, 0.9))
    assert torch.all(det["scores"][:-1] >= det["scores"][1:])
    assert det["segments"][:2].tolist() == [[6.0, 8.0], [1.0, 4.0]]
    (capped,) = group_class_map(probs, top_k=2)
    assert len(capped["scores"]) == 2


def test_min_length_drops_short_runs():
    probs = class_map([[0.9, 0.0, 0.9, 0.9, 0.0]])
    _, _, start, end, _ = class_map_candidates(probs, thresholds=(0.5,), min_length=2)
    assert list(zip(start.tolist(), end.tolist())) == [(2, 4)]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="probs"):
        group_class_map(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="thresholds"):
        group_class_map(class_map([[0.5]]), thresholds=(0.0, 0.5))
    with pytest.raises(ValueError, match="top_k"):
        group_class_map(class_map([[0.5]]), top_k=0)
    with pytest.raises(ValueError, match="min_length"):
        class_map_candidates(class_map([[0.5]]), min_length=0)
    with pytest.raises(ValueError, match="score"):
        class_map_candidates(class_map([[0.5]]), score="max")
    with pytest.raises(TypeError, match="active"):
        activation_runs(torch.zeros(3))
