"""tadlab.diagnostics: decoding edited outputs, mask quality and the duration breakdown, on hand-made cases."""
import math
import warnings

import pytest
import torch
from torch import nn

from tadlab.data.synthetic import make_world
from tadlab.diagnostics import DURATION_EDGES, duration_breakdown, evaluate_outputs, mask_quality
from tadlab.eval import ANET_TIOU
from tadlab.experiments import detection_metrics
from tadlab.losses import GSMT_EPS
from tadlab.models.gsmt import GSMT


@pytest.fixture(scope="module")
def small_world():
    return make_world("anet", 20, seed=1, num_snippets=32)


def small_gsmt(world):
    torch.manual_seed(0)
    return GSMT(world.feature_dim, world.num_classes, world.num_snippets, hidden=8, heads=2, positional="fixed")


def test_unedited_outputs_score_as_detection_metrics(small_world):
    model = small_gsmt(small_world)
    with warnings.catch_warnings():  # detections of classes absent from the testing videos: dropped either way
        warnings.simplefilter("ignore")
        expected = {source: detection_metrics(model, small_world, ANET_TIOU, "testing", "cpu", source=source)
                    for source in ("masks", "class_map")}
    assert evaluate_outputs(model, small_world, ANET_TIOU, device="cpu") == expected["masks"]
    assert evaluate_outputs(model, small_world, ANET_TIOU, device="cpu", source="class_map") == expected["class_map"]


def test_the_ground_truth_in_place_of_both_outputs_finds_the_instances(small_world):
    model = small_gsmt(small_world)

    def oracle(outputs, batch):
        return model.oracle_outputs(outputs, batch, classes=True, masks=True)

    untrained = evaluate_outputs(model, small_world, ANET_TIOU, device="cpu")["average_mAP"]
    both = evaluate_outputs(model, small_world, ANET_TIOU, oracle, device="cpu", top_snippets=32)["average_mAP"]
    assert both > 0.8 > untrained  # nested and duplicate annotations keep it from exactly 1


class FixedOutputs(nn.Module):
    """A stand-in model whose outputs are given, with GSMT's targets."""

    def __init__(self, probs, masks, num_snippets, num_classes):
        super().__init__()
        self.probs, self.masks = probs, masks
        self.gsmt = GSMT(4, num_classes, num_snippets, hidden=4, heads=1)

    def forward(self, features):
        return {"probs": self.probs, "masks": self.masks}

    def targets(self, batch):
        return self.gsmt.targets(batch)


def test_mask_quality_by_hand():
    """T = 10, one instance [2, 6) of class 0, K = 1. Snippet 2's column is exact, 3's covers [2, 5) (IoU 3/4),
    4's is [6, 9) (IoU 0, bands disjoint: lambda at its cap), 5's is exact. P: snippets 2-4 class 0, 5 background."""
    T = 10
    target = torch.zeros(T)
    target[2:6] = 1
    masks = torch.zeros(1, T, T)
    masks[0, :, 2] = target
    masks[0, 2:5, 3] = 1
    masks[0, 6:9, 4] = 1
    masks[0, :, 5] = target
    probs = torch.zeros(1, 2, T)
    probs[0, 1] = 1  # background ...
    probs[0, :, 2:5] = torch.tensor([[1.0], [0.0]])  # ... but class 0 on snippets 2-4
    model = FixedOutputs(probs, masks, T, 1)
    item = {"video_id": "v", "features": torch.zeros(4, T), "segments": torch.tensor([[2.0, 6.0]]),
            "labels": torch.tensor([0]), "duration": 10.0}
    quality = mask_quality(model, [item], kernel_size=3, device="cpu")
    assert math.isclose(quality["fg_accuracy"], 3 / 4)
    assert math.isclose(quality["column_iou"], (1 + 0.75 + 0 + 1) / 4, rel_tol=1e-6)
    assert math.isclose(quality["lambda_at_cap"], 1 / 4)
    # overlaps with Phi(G) = {2, 5} (k = 3): exact columns 2, [2, 5) has band {2, 4} -> 1, disjoint 0
    lambdas = sorted(1 / (o + GSMT_EPS) for o in (2.0, 1.0, 0.0, 2.0))
    assert math.isclose(quality["lambda_median"], lambdas[1], rel_tol=1e-5)  # torch's median: the lower middle


def test_mask_quality_lambda_follows_the_border():
    """T = 10, one instance [6, 10) that runs to the video's end, k = 3. Columns 6 and 8 are exact, 7 and 9 predict
    [3, 10): the right end, the wrong start. Geodesic border: Phi(G) = {6} and the wrong columns' band is {3},
    disjoint (lambda at its cap for half the columns). Zero border: Phi(G) = {6, 9}, the wrong columns' {3, 9}: they
    meet at the video's last snippet, and no column is at the cap."""
    T = 10
    target = torch.zeros(T)
    target[6:] = 1
    wrong = torch.zeros(T)
    wrong[3:] = 1
    masks = torch.zeros(1, T, T)
    masks[0, :, 6], masks[0, :, 7], masks[0, :, 8], masks[0, :, 9] = target, wrong, target, wrong
    probs = torch.zeros(1, 2, T)
    probs[0, 0] = 1
    model = FixedOutputs(probs, masks, T, 1)
    item = {"video_id": "v", "features": torch.zeros(4, T), "segments": torch.tensor([[6.0, 10.0]]),
            "labels": torch.tensor([0]), "duration": 10.0}
    geodesic = mask_quality(model, [item], kernel_size=3, device="cpu")  # the default: FixedOutputs has no border
    assert geodesic == mask_quality(model, [item], kernel_size=3, device="cpu", border="geodesic")
    zero = mask_quality(model, [item], kernel_size=3, device="cpu", border="zero")
    assert geodesic["lambda_at_cap"] == 0.5 and zero["lambda_at_cap"] == 0.0
    # overlaps 2, 1, 2, 1: lambdas 1/2, 1, 1/2, 1, whose lower middle (torch's median) is 1/2
    assert math.isclose(zero["lambda_median"], 1 / (2 + GSMT_EPS), rel_tol=1e-6)
    model.mask_border = "zero"  # a model's own border is the default
    assert mask_quality(model, [item], kernel_size=3, device="cpu") == zero


def test_duration_breakdown_by_hand():
    """Video of 100 s, T = 100 (1 s per snippet): instances of 10 s ([0, 10)) and 50 s ([40, 90)), class 0;
    detections: [0, 8) class 0 (tIoU 0.8), [40, 60) class 0 (tIoU 0.4), [40, 90) class 1 (wrong class)."""
    item = {"features": torch.zeros(2, 100), "segments": torch.tensor([[0.0, 10.0], [40.0, 90.0]]),
            "labels": torch.tensor([0, 0]), "duration": 100.0}
    det = {"segments": torch.tensor([[0.0, 8.0], [40.0, 60.0], [40.0, 90.0]]),
           "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 1])}
    found = duration_breakdown([det], [item], DURATION_EDGES["anet"])
    assert found["count"] == [1, 1, 0, 0, 0]
    assert found["best_tiou"][:2] == pytest.approx([0.8, 0.4]) and found["best_tiou"][2:] == [None] * 3
    assert found["recall_0.5"][:2] == [1.0, 0.0]
    only_top = duration_breakdown([det], [item], DURATION_EDGES["anet"], top_factor=1)  # top 2 of 3 still
    assert only_top["best_tiou"][:2] == pytest.approx([0.8, 0.4])
    empty = {"segments": torch.zeros(0, 2), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    assert duration_breakdown([empty], [item], DURATION_EDGES["anet"])["best_tiou"][:2] == [0.0, 0.0]
    with pytest.raises(ValueError, match="increasing"):
        duration_breakdown([det], [item], (30, 10, 60, 90))
    with pytest.raises(ValueError, match="pair up"):
        duration_breakdown([det, det], [item], DURATION_EDGES["anet"])
    # in snippets: a 200 s video of T = 100 (2 s per snippet) puts the same instances in other bins
    item_200s = {**item, "duration": 200.0}
    assert duration_breakdown([det], [item_200s], DURATION_EDGES["anet"])["count"] == [1, 0, 1, 0, 0]
    by_snippets = duration_breakdown([det], [item_200s], (8, 16, 32, 64), unit="snippets")
    assert by_snippets["count"] == [0, 1, 0, 1, 0] and by_snippets["best_tiou"][1] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="unit"):
        duration_breakdown([det], [item], DURATION_EDGES["anet"], unit="frames")
