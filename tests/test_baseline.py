"""The per-snippet baseline: shapes, loss, and detection on hand-made logits."""
import math

import pytest
import torch

from tadlab.data.collate import collate_videos
from tadlab.data.synthetic import make_world
from tadlab.models.baseline import SnippetClassifier, TemporalContextClassifier

BIG = 20.0


def _logits(classes, num_classes):
    """(1, K+1, T) logits whose arg-max per snippet is ``classes[t]`` (K = background), almost surely."""
    logits = torch.zeros(1, num_classes + 1, len(classes))
    logits[0, torch.tensor(classes), torch.arange(len(classes))] = BIG
    return logits


@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_forward_shape_and_loss(hidden_dim):
    world = make_world("thumos", 4, seed=0, num_snippets=32, feature_dim=8, num_classes=3)
    model = SnippetClassifier(8, 3, hidden_dim=hidden_dim)
    batch = collate_videos(world.videos)
    outputs = model(batch["features"])
    assert outputs["logits"].shape == (4, 4, 32)
    losses = model.loss(outputs, batch)
    assert set(losses) == {"total", "ce"} and losses["total"].shape == ()
    losses["total"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_loss_is_cross_entropy_on_centre_rule_labels():
    model = SnippetClassifier(2, 2, hidden_dim=None)
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, :2] = math.log(3.0)  # p(class 0) = 3/5 on snippets 0, 1
    batch = {"segments": torch.tensor([[[0.0, 1.6]]]), "labels": torch.tensor([[0]])}
    # Centre rule: snippets 0 and 1 (centres 0.5, 1.5) are class 0, snippets 2 and 3 background (index 2).
    expected = (2 * -math.log(3 / 5) + 2 * -math.log(1 / 3)) / 4
    assert model.loss({"logits": logits}, batch)["ce"].item() == pytest.approx(expected, rel=1e-6)


def test_detect_groups_runs_of_the_same_class():
    model = SnippetClassifier(4, 3)
    bg = 3
    outputs = {"logits": _logits([bg, 0, 0, 0, 1, 1, bg, 2, bg, 0], 3)}
    (det,) = model.detect(outputs, threshold=0.5)
    found = sorted(zip(det["segments"].tolist(), det["labels"].tolist()))
    assert found == [([1.0, 4.0], 0), ([4.0, 6.0], 1), ([7.0, 8.0], 2), ([9.0, 10.0], 0)]
    assert det["labels"].dtype == torch.int64
    assert torch.all(det["scores"][:-1] >= det["scores"][1:])  # Soft-NMS returns them by score
    assert det["scores"].max() <= 1 and det["scores"].min() > 0.99


def test_detect_scores_are_mean_class_probability_and_threshold_applies():
    model = SnippetClassifier(4, 1)
    # Two classes (0 and background 1); p(0) on five snippets: 0.9, 0.7, 0.55, 0.4, 0.95.
    p = torch.tensor([0.9, 0.7, 0.55, 0.4, 0.95])
    logits = torch.stack([p.log(), (1 - p).log()])[None]
    (det,) = model.detect({"logits": logits}, threshold=0.5)
    ordered = sorted(zip(det["segments"].tolist(), det["scores"].tolist()))
    assert [s for s, _ in ordered] == [[0.0, 3.0], [4.0, 5.0]]
    assert ordered[0][1] == pytest.approx((0.9 + 0.7 + 0.55) / 3, rel=1e-5)
    assert ordered[1][1] == pytest.approx(0.95, rel=1e-5)
    (strict,) = model.detect({"logits": logits}, threshold=0.8)
    assert sorted(strict["segments"].tolist()) == [[0.0, 1.0], [4.0, 5.0]]


def test_detect_batches_do_not_merge_across_videos():
    model = SnippetClassifier(4, 2)
    logits = torch.cat([_logits([2, 0, 0], 2), _logits([0, 0, 2], 2), _logits([2, 2, 2], 2)])
    dets = model.detect({"logits": logits})
    assert [d["segments"].tolist() for d in dets] == [[[1.0, 3.0]], [[0.0, 2.0]], []]
    assert dets[2]["segments"].shape == (0, 2) and dets[2]["labels"].shape == (0,)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="num_classes"):
        SnippetClassifier(8, 0)
    model = SnippetClassifier(8, 3)
    with pytest.raises(ValueError, match="features"):
        model(torch.zeros(2, 5, 10))
    with pytest.raises(ValueError, match="logits"):
        model.detect({"logits": torch.zeros(1, 3, 10)})
    with pytest.raises(ValueError, match="threshold"):
        model.detect({"logits": torch.zeros(1, 4, 10)}, threshold=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_loss_detect():
    world = make_world("anet", 4, seed=0, num_snippets=32, feature_dim=8, num_classes=3)
    model = SnippetClassifier(8, 3).cuda()
    batch = collate_videos(world.videos)
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    outputs = model(batch["features"])
    model.loss(outputs, batch)["total"].backward()
    dets = model.detect(outputs, threshold=0.0)
    assert all(d["segments"].device.type == "cuda" for d in dets)


def test_context_classifier_sees_its_receptive_field_and_no_further():
    model = TemporalContextClassifier(4, 2, hidden_dim=8, dilations=(1, 2), center_features=False).eval()
    assert model.receptive_field == 7
    features = torch.randn(1, 4, 20)
    changed = features.clone()
    changed[0, :, 10] += 5.0
    with torch.no_grad():
        delta = (model(changed)["logits"] - model(features)["logits"]).abs().sum(1)[0]
    moved = (delta > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == list(range(7, 14))  # snippet 10 +- 3


def test_context_classifier_centres_features_per_video():
    model = TemporalContextClassifier(4, 2, hidden_dim=8).eval()
    features = torch.randn(2, 4, 16)
    with torch.no_grad():
        a, b = model(features)["logits"], model(features + torch.randn(2, 4, 1) * 3)["logits"]
    assert torch.allclose(a, b, atol=1e-5)


def test_class_map_decoder_finds_a_run_the_runs_decoder_misses():
    # p(class 0) dips to 0.45 in the middle: one threshold at 0.5 splits the instance, nine thresholds recover it.
    p = torch.tensor([0.02, 0.9, 0.9, 0.45, 0.9, 0.9, 0.02])
    logits = torch.stack([p.log(), (1 - p).log()])[None]
    model = SnippetClassifier(4, 1)
    (runs,) = model.detect({"logits": logits}, decoder="runs")
    (grouped,) = model.detect({"logits": logits}, decoder="class_map")
    assert [1.0, 6.0] not in runs["segments"].tolist()
    assert [1.0, 6.0] in grouped["segments"].tolist()
    with pytest.raises(ValueError, match="decoder"):
        model.detect({"logits": logits}, decoder="masks")


def test_context_classifier_trains_with_the_shared_loop():
    world = make_world("anet", 8, seed=0, num_snippets=32, feature_dim=8, num_classes=3)
    model = TemporalContextClassifier(8, 3, hidden_dim=16)
    batch = collate_videos(world.videos)
    losses = model.loss(model(batch["features"]), batch)
    losses["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="dilations"):
        TemporalContextClassifier(8, 3, dilations=())
