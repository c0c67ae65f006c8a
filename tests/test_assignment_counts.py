"""Notebook 02's counting: every scheme's positives per instance, one-to-one by the real matching (a video with more
instances than queries leaves some without one), the annotations the overlap rule leaves with no snippet, and
SegTAD's step next to the paper's."""
from types import SimpleNamespace

import pytest
import torch

from tadlab.assignment_counts import (count_positives, counts_table, eta_granularity, loglog_slope,
                                      positives_per_instance, segtad_equivalent_eta, unowned_annotations)
from tadlab.experiments import standard_world


def tiny_world(videos, preset="anet", num_snippets=40, num_classes=3):
    """A stand-in world: only what the counting reads."""
    items = [{"video_id": f"v{i}", "segments": torch.tensor(s, dtype=torch.float32).reshape(-1, 2),
              "labels": torch.tensor(c, dtype=torch.long), "features": torch.zeros(2, num_snippets), "duration": 10.0}
             for i, (s, c) in enumerate(videos)]
    return SimpleNamespace(preset=preset, num_snippets=num_snippets, num_classes=num_classes, videos=items,
                           class_names=[f"c{k}" for k in range(num_classes)])


def by_scheme(counts):
    return {c.scheme: c for c in counts}


def test_positives_per_instance_counts_each_instance_and_ignores_negatives():
    gt_index = torch.tensor([[0, 0, -1, 1, 0]])
    assert positives_per_instance(gt_index, 3).tolist() == [[3, 1, 0]]


def test_one_to_one_gives_each_instance_one_query_until_the_queries_run_out():
    five = [[4.0 * i, 4.0 * i + 2] for i in range(5)]
    world = tiny_world([(five, [0] * 5), ([[0.0, 30.0]], [1])])
    counts = by_scheme(count_positives(world, num_queries=3))
    one = counts["one-to-one (SP-TAD), Q=3"]
    assert sorted(one.positives[:5].tolist()) == [0, 0, 1, 1, 1] and one.positives[5] == 1
    assert one.share_without == pytest.approx(2 / 6)
    assert one.negatives_per_video == pytest.approx(3 - (3 + 1) / 2)
    snippets = counts["snippet labels (GSMT, SegTAD)"]
    assert snippets.positives.tolist() == [2, 2, 2, 2, 2, 30] and snippets.candidates == 40
    assert "one-to-one (SP-TAD), Q=3" in counts_table(list(counts.values()))
    with pytest.raises(ValueError, match="num_queries must be a positive int"):
        count_positives(world, num_queries=0)


def test_a_coarse_sparse_step_misses_short_instances_that_a_fine_one_keeps():
    world = tiny_world([([[1.0, 3.0], [10.0, 30.0]], [0, 0])])
    counts = by_scheme(count_positives(world, etas=(4, 1)))
    assert counts["sparse pattern η=4 (SegTAD)"].positives.tolist()[0] == 0
    assert counts["sparse pattern η=1 (SegTAD)"].positives.tolist()[0] > 0
    assert loglog_slope(list(counts.values()), "snippet labels (GSMT, SegTAD)") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no counts of scheme"):
        loglog_slope(list(counts.values()), "nothing")


def test_unowned_annotations_name_their_cause():
    world = tiny_world([([[2.0, 8.0], [2.0, 8.0], [1.0, 9.0], [2.5, 7.5], [20.2, 20.4]], [0, 1, 2, 2, 0])])
    found = unowned_annotations(world)
    # [2, 8) twice: the second owns nothing; [1, 9) keeps snippets 1 and 8; [2.5, 7.5) is shortest, owns 3..6;
    # so [2, 8) (first) owns 2 and 7 only; the sliver [20.2, 20.4) holds no centre.
    assert found == {"videos": 1, "annotations": 5, "unowned": 2, "same segment": 1, "inside a shorter one": 0,
                     "no snippet centre": 1, "classes": {"c0": 1, "c1": 1}}


def test_nested_classes_leave_every_parent_label_without_a_snippet():
    world = standard_world("thumos", "smoke", 0, duplicates=0.0)
    found = unowned_annotations(world)
    # every pair of annotations with the same segment (a child and its parent label) leaves one without a snippet
    nested = sum(int((v["segments"][:, None] == v["segments"][None]).all(-1).sum() - len(v["labels"])) // 2
                 for v in world.videos)
    assert found["same segment"] == nested and found["unowned"] >= nested
    assert unowned_annotations(standard_world("thumos", "smoke", 0, nested_classes=0, duplicates=0.0))["unowned"] == 0


def test_segtad_step_next_to_the_papers():
    assert segtad_equivalent_eta(1000) == 8 and segtad_equivalent_eta(256) == 2 and segtad_equivalent_eta(100) == 1
    assert eta_granularity(256, 4)["times_paper"] == pytest.approx(1.953125)
    assert eta_granularity(100, 4)["times_paper"] == pytest.approx(5.0)
