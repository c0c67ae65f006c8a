"""SP-TAD: SoI align by hand and against grid_sample, level selection, the sparse interaction, matching and the set
loss on hand-made cases, gradients through the stages, detection options, training, errors, CUDA."""
import itertools
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tadlab.data.synthetic import make_world
from tadlab.labels import matching_cost
from tadlab.models import SPTAD
from tadlab.models.sptad import (SCALE_CLAMP, SparseInteraction, SPTADConfig, TemporalPyramid, pyramid_level,
                                 soi_align, thumos_size_cost, video_features)
from tadlab.sptad_study import PAPER_RECIPE, diagnose, train_sptad_as_printed, video_score_metrics
from tadlab.segments import segment_giou
from tadlab.train import evaluate, fit

from detector_checks import needs_cuda, to_device, train_steps

C, K, T = 6, 3, 32
SMALL = dict(hidden=16, heads=2, dynamic_dim=4, num_proposals=8, num_stages=2, soi_points=4)


def small_model(**overrides) -> SPTAD:
    torch.manual_seed(0)
    return SPTAD(C, K, **{**SMALL, **overrides})


def batch_of(segments_per_video, labels_per_video, features=None):
    """A collated batch (as collate_videos makes it) from per-video lists of [start, end) and labels."""
    count = max(1, max(len(s) for s in segments_per_video))
    size = len(segments_per_video)
    segments = torch.zeros(size, count, 2)
    labels = torch.full((size, count), -1, dtype=torch.int64)
    for b, (segs, labs) in enumerate(zip(segments_per_video, labels_per_video)):
        if segs:
            segments[b, : len(segs)] = torch.tensor(segs, dtype=torch.float32)
            labels[b, : len(labs)] = torch.tensor(labs)
    features = torch.randn(size, C, T) if features is None else features
    return {"video_ids": [f"v{b}" for b in range(size)], "features": features, "segments": segments,
            "labels": labels, "durations": torch.full((size,), float(T), dtype=torch.float64)}


def hand_outputs(logits, segments, num_snippets=20):
    """One stage's hand-made predictions (B, N, K), (B, N, 2) as a forward() dict with S = 1."""
    return {"logits": logits, "segments": segments, "stage_logits": logits[None], "stage_segments": segments[None],
            "num_snippets": num_snippets}


# --------------------------------------------------------------------------------------------------- SoI align
def test_soi_align_by_hand():
    fine = torch.tensor([[[4.0, 10.0, 20.0, 30.0]]])  # stride 1: cell i centred at snippet i + 0.5
    coarse = torch.tensor([[[1.0, 3.0]]])  # stride 2: cells [0, 2), [2, 4) centred at 1 and 3
    segments = torch.tensor([[[0.0, 2.0], [1.0, 4.0]]])
    out = soi_align([fine, coarse], (1, 2), segments, torch.tensor([[0, 1]]), num_points=4)
    # [0, 2) at stride 1: points 0.25, 0.75, 1.25, 1.75 -> u = -0.25, 0.25, 0.75, 1.25 (u = x / s - 0.5);
    # u = -0.25 mixes the zero outside (weight 0.25) with cell 0 (weight 0.75).
    assert out.shape == (1, 2, 4, 1)
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([0.75 * 4, 0.75 * 4 + 0.25 * 10,
                                                              0.25 * 4 + 0.75 * 10, 0.75 * 10 + 0.25 * 20]))
    # [1, 4) at stride 2: points 1.375, 2.125, 2.875, 3.625 -> u = 0.1875, 0.5625, 0.9375, 1.3125
    expected = [0.8125 * 1 + 0.1875 * 3, 0.4375 * 1 + 0.5625 * 3, 0.0625 * 1 + 0.9375 * 3, 0.6875 * 3]
    torch.testing.assert_close(out[0, 1, :, 0], torch.tensor(expected))


def test_soi_align_matches_grid_sample():
    torch.manual_seed(1)
    strides, dim, points = (2, 4, 8, 16), 5, 7
    levels = [torch.randn(2, dim, T // s) for s in strides]
    start = torch.rand(2, 9) * T * 1.2 - 4  # some segments reach past both ends of the video
    segments = torch.stack([start, start + 0.5 + torch.rand(2, 9) * T / 2], dim=-1)
    level_index = torch.randint(0, 4, (2, 9))
    out = soi_align(levels, strides, segments, level_index, points)
    assert out.shape == (2, 9, points, dim)
    for b, n in itertools.product(range(2), range(9)):
        level, stride = levels[level_index[b, n]][b], strides[level_index[b, n]]
        x = segments[b, n, 0] + (torch.arange(points) + 0.5) / points * (segments[b, n, 1] - segments[b, n, 0])
        u = x / stride - 0.5
        grid_x = (2 * u + 1) / level.shape[-1] - 1  # align_corners=False: cell i's centre at (2i + 1) / W - 1
        grid = torch.stack([grid_x, torch.zeros_like(grid_x)], dim=-1)[None, None]
        reference = F.grid_sample(level[None, :, None], grid, align_corners=False, padding_mode="zeros")
        torch.testing.assert_close(out[b, n], reference[0, :, 0].T, atol=1e-5, rtol=1e-5)


def test_soi_align_is_differentiable_in_features_and_segments():
    torch.manual_seed(2)
    levels = [torch.randn(1, 2, 8, dtype=torch.float64, requires_grad=True),
              torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)]
    segments = torch.tensor([[[1.3, 6.1], [2.2, 15.4]]], dtype=torch.float64, requires_grad=True)
    level_index = torch.tensor([[0, 1]])
    assert torch.autograd.gradcheck(lambda a, b, s: soi_align([a, b], (2, 4), s, level_index, 3),
                                    (*levels, segments))


# ------------------------------------------------------------------------------------------------ level choice
def test_pyramid_level_follows_eq_1():
    lengths = torch.tensor([128.0, 64.0, 63.9, 32.0, 16.0, 15.9, 4.0, 500.0])
    levels = pyramid_level(lengths, 128, 4)  # l0 = 3: the whole video reads the coarsest level
    assert levels.tolist() == [3, 2, 1, 1, 0, 0, 0, 3]  # floor(3 + log2(t / 128)), clamped to [0, 3]
    assert pyramid_level(lengths, 128, 4, top_level=2).tolist() == [2, 1, 0, 0, 0, 0, 0, 3]
    assert pyramid_level(lengths, 128, 1).tolist() == [0] * 8


def test_model_reads_the_level_of_its_widened_length():
    model = small_model(num_stages=1, proposal_init="whole")
    outputs = model(torch.randn(1, C, T))
    assert outputs["levels"].tolist() == [[[3] * 8]]  # widened whole video: 1.4 T -> floor(3 + 0.49) = 3
    with torch.no_grad():
        model.proposal_segments[:, 1] = torch.tensor([1, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01])
    # widened fractions 1.4, 0.7, 0.42, 0.28, 0.14, 0.07, ... -> floor(3 + log2(.)) clamped to [0, 3]
    assert model(torch.randn(1, C, T))["levels"].tolist() == [[[3, 2, 1, 1, 0, 0, 0, 0]]]


@pytest.mark.parametrize("pyramid, sizes", [("intermediate", [64, 32, 16, 8]), ("last", [16, 8, 4, 2]),
                                            ("single", [16])])
def test_pyramid_levels_have_their_strides(pyramid, sizes):
    block = TemporalPyramid(C, 8, pyramid)
    levels, backbone = block(torch.randn(2, C, 128))
    assert [level.shape[-1] for level in levels] == sizes == [128 // s for s in block.strides]
    assert [level.shape for level in backbone] == [(2, 8, 64), (2, 8, 32), (2, 8, 16)]
    assert block(torch.randn(1, C, 45))[0][0].shape[-1] == math.ceil(45 / block.strides[0])  # any T


def silent_pyramid(pyramid: str = "intermediate", stride_one: bool = False) -> TemporalPyramid:
    """A pyramid on C = d features whose stem is the identity and whose stages' residual convs output 0: each
    backbone level is then the plain average its geometry promises."""
    block = TemporalPyramid(C, C, pyramid, stride_one)
    with torch.no_grad():
        block.stem.weight.copy_(torch.eye(C)[..., None]), block.stem.bias.zero_()
        for stage in block.backbone:
            stage.convs[-1].weight.zero_(), stage.convs[-1].bias.zero_()
    return block


@pytest.mark.parametrize("length", [64, 45])
def test_cell_i_of_a_level_of_stride_s_covers_snippets_i_s_to_i_plus_1_s(length):
    block = silent_pyramid(stride_one=True)
    assert block.strides == (1, 2, 4, 8, 16)
    features = torch.randn(1, C, length)
    _, backbone = block(features)
    for level, stride in zip(backbone, (2, 4, 8)):
        assert level.shape[-1] == math.ceil(length / stride)
        for i in range(length // stride):  # the full cells (a last, partial one averages what exists, stage-wise)
            torch.testing.assert_close(level[..., i], features[..., i * stride: (i + 1) * stride].mean(-1))
    # The stride-1 level P0 is the stem's output, cell i = snippet i: with only its lateral on (identity) and the
    # output conv the identity, the top-down sum adds nothing.
    with torch.no_grad():
        for lateral in block.lateral:
            lateral.weight.zero_(), lateral.bias.zero_()
        block.lateral[0].weight.copy_(torch.eye(C)[..., None])
        block.output[0].weight.zero_(), block.output[0].bias.zero_()
        block.output[0].weight[:, :, 1] = torch.eye(C)
    levels, _ = block(features)
    assert [level.shape[-1] for level in levels] == [math.ceil(length / s) for s in (1, 2, 4, 8, 16)]
    torch.testing.assert_close(levels[0], features)


def test_soi_align_reads_the_stride_one_level_cell_by_cell():
    level = torch.arange(8.0).reshape(1, 1, 8)  # stride 1: cell i covers [i, i + 1), its centre at i + 0.5
    segments = torch.tensor([[[2.0, 6.0]]])  # 4 points at the centres of cells 2, 3, 4, 5
    out = soi_align([level, level[..., ::2]], (1, 2), segments, torch.tensor([[0]]), num_points=4)
    assert out[0, 0, :, 0].tolist() == [2.0, 3.0, 4.0, 5.0]


def test_stride_one_level_is_an_option_of_the_intermediate_pyramid():
    default = small_model()
    assert default.pyramid.strides == (2, 4, 8, 16) == SPTADConfig().strides  # unchanged unless asked for
    model = small_model(stride_one_level=True, num_stages=1, proposal_init="whole")
    assert model.pyramid.strides == (1, 2, 4, 8, 16) and model.config.strides == (1, 2, 4, 8, 16)
    with torch.no_grad():  # widened lengths 1.4 T, 0.7 T, 0.14 T, 0.014 T -> Eq. 1 with l0 = 4 over five levels
        model.proposal_segments[:4, 1] = torch.tensor([1.0, 0.5, 0.1, 0.01])
    levels = model(torch.randn(1, C, T))["levels"][0, 0, :4].tolist()
    assert levels == [4, 3, 1, 0]  # floor(4 + log2(1.4, 0.7, 0.14, 0.014)) = 4, 3, 1, -2 -> 0 (stride 1)
    with pytest.raises(ValueError, match="stride_one_level"):
        SPTAD(C, K, pyramid="last", stride_one_level=True)
    with pytest.raises(TypeError, match="stride_one_level"):
        SPTAD(C, K, stride_one_level=1)
    with pytest.raises(ValueError, match="top_level"):
        SPTAD(C, K, top_level=4)  # four levels without it
    assert SPTAD(C, K, **SMALL, stride_one_level=True, top_level=4).config.top_level == 4


# ------------------------------------------------------------------------------------------ sparse interaction
def test_sparse_interaction_shapes_and_order_of_the_two_dynamic_matrices():
    torch.manual_seed(3)
    d, dh, points = 6, 3, 5
    block = SparseInteraction(d, dh, points)
    first, second = torch.randn(d, dh), torch.randn(dh, d)
    with torch.no_grad():  # every proposal then generates the same two matrices: first (d x dh), second (dh x d)
        block.generate.weight.zero_()
        block.generate.bias.copy_(torch.cat([first.flatten(), second.flatten()]))
    proposals, soi = torch.randn(2, 4, d), torch.randn(2, 4, points, d)
    out = block(proposals, soi)
    assert out.shape == (2, 4, d)
    hidden = F.relu(F.layer_norm(soi @ first, (dh,)))  # (B, N, T', dh): the first "1D convolution"
    hidden = F.relu(F.layer_norm(hidden @ second, (d,)))  # (B, N, T', d): the second
    torch.testing.assert_close(out, block.project(hidden.flatten(-2)))


def test_sparse_interaction_keeps_each_proposal_to_its_own_soi():
    torch.manual_seed(4)
    block = SparseInteraction(8, 4, 3)
    proposals, soi = torch.randn(1, 5, 8), torch.randn(1, 5, 3, 8)
    before = block(proposals, soi)
    soi[0, 2] += 1.0
    proposals[0, 2] += 1.0
    after = block(proposals, soi)
    changed = (after - before).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [False, False, True, False, False]


# ------------------------------------------------------------------------------------------ matching and loss
def test_matching_is_optimal_at_every_stage():
    torch.manual_seed(5)
    model = small_model(num_proposals=4)
    batch = batch_of([[[2.0, 9.0], [12.0, 30.0], [20.0, 24.0]]], [[0, 2, 1]])
    logits = torch.randn(3, 1, 4, K)  # three stages
    start = torch.rand(3, 1, 4) * 24
    segments = torch.stack([start, start + 1 + torch.rand(3, 1, 4) * 8], dim=-1)
    assigned = model.assign(logits, segments, batch)
    assert assigned.shape == (3, 1, 4)
    for s in range(3):
        cost = matching_cost(logits[s, 0], segments[s, 0], batch["segments"][0], batch["labels"][0], T)
        best = min(sum(float(cost[p, g]) for g, p in enumerate(perm)) for perm in itertools.permutations(range(4), 3))
        chosen = [(p, int(g)) for p, g in enumerate(assigned[s, 0]) if g >= 0]
        assert sorted(g for _, g in chosen) == [0, 1, 2]  # one prediction per instance
        assert math.isclose(sum(float(cost[p, g]) for p, g in chosen), best, rel_tol=1e-6)


def test_set_loss_by_hand():
    """Two predictions, one instance [2, 8) of class 1, T = 20, all logits 0 (p = 0.5)."""
    model = small_model(num_proposals=2)
    batch = batch_of([[[2.0, 8.0]]], [[1]], features=torch.zeros(1, C, 20))
    segments = torch.tensor([[[2.0, 6.0], [10.0, 18.0]]])
    terms = model.loss(hand_outputs(torch.zeros(1, 2, K), segments), batch)
    # prediction 0 wins the match (same class cost; L1 0.1 and GIoU 4/6 against 0.9 and -1/8).
    log2 = math.log(2)
    focal = 0.25 * 0.5 ** 2 * log2 + (2 * K - 1) * 0.75 * 0.5 ** 2 * log2  # one positive entry, five negatives
    assert math.isclose(float(terms["focal"]), focal, rel_tol=1e-5)
    assert math.isclose(float(terms["l1"]), (0 + 2) / 20, rel_tol=1e-5)
    assert math.isclose(float(terms["giou"]), 1 - 4 / 6, rel_tol=1e-5)
    assert math.isclose(float(terms["total"]), 2 * focal + 5 * 0.1 + 2 * (1 / 3), rel_tol=1e-5)
    assert float(terms["positives_per_instance"]) == 1.0
    weighted = SPTAD(C, K, **SMALL, class_weight=1.0, l1_weight=0.0, giou_weight=3.0)
    assert math.isclose(float(weighted.loss(hand_outputs(torch.zeros(1, 2, K), segments), batch)["total"]),
                        focal + 3 * (1 / 3), rel_tol=1e-5)


def test_one_to_many_adds_overlapping_predictions_as_positives():
    batch = batch_of([[[2.0, 8.0]]], [[1]], features=torch.zeros(1, C, 20))
    segments = torch.tensor([[[2.0, 8.0], [2.0, 7.0], [10.0, 18.0]]])  # tIoU with the instance: 1, 5/6, 0
    logits = torch.zeros(1, 3, K)
    one = small_model(num_proposals=3)
    many = small_model(num_proposals=3, assignment="one_to_many")
    assert one.assign(logits, segments, batch).tolist() == [[0, -1, -1]]
    assert many.assign(logits, segments, batch).tolist() == [[0, 0, -1]]
    terms = many.loss(hand_outputs(logits, segments), batch)
    assert float(terms["positives_per_instance"]) == 2.0
    giou = 1 - float(segment_giou(torch.tensor([[2.0, 7.0]]), torch.tensor([[2.0, 8.0]]), aligned=True))
    assert math.isclose(float(terms["giou"]), giou / 2, rel_tol=1e-5)  # divided by N_pos = 2
    assert math.isclose(float(terms["l1"]), (1 / 20) / 2, rel_tol=1e-5)


def test_loss_with_videos_without_instances():
    model = small_model()
    outputs = model(torch.randn(2, C, T))
    mixed = model.loss(outputs, batch_of([[[3.0, 9.0]], []], [[2], []]))
    empty = model.loss(outputs, batch_of([[], []], [[], []]))
    assert torch.isfinite(mixed["total"]) and torch.isfinite(empty["total"])
    assert float(empty["l1"].detach()) == 0.0 and float(empty["giou"].detach()) == 0.0
    assert float(empty["focal"].detach()) > 0


# ------------------------------------------------------------------------------------------------- gradients
def test_every_stage_loss_reaches_the_proposal_segments_and_features():
    model = small_model(num_stages=3)
    batch = batch_of([[[3.0, 9.0], [14.0, 26.0]], [[5.0, 20.0]]], [[0, 2], [1]])
    outputs = model(batch["features"])
    assigned = model.assign(outputs["stage_logits"], outputs["stage_segments"], batch)
    for s in range(3):
        stage = model.set_loss(outputs["stage_logits"][s], outputs["stage_segments"][s], assigned[s], batch)
        grads = torch.autograd.grad(stage["total"], [model.proposal_segments, model.proposal_features],
                                    retain_graph=True)
        assert all(float(g.abs().sum()) > 0 for g in grads), f"stage {s + 1} does not reach the proposals"


def test_segments_are_detached_between_stages():
    model = small_model(num_stages=2)
    outputs = model(torch.randn(1, C, T))
    # The untrained boundary heads return their input segments; stage 1's output depends on the proposals
    # directly (gradient 1 per coordinate), stage 2's only through the detached copy (gradient 0).
    first, = torch.autograd.grad(outputs["stage_segments"][0].sum(), model.proposal_segments, retain_graph=True)
    second, = torch.autograd.grad(outputs["stage_segments"][1].sum(), model.proposal_segments)
    assert torch.allclose(first[:, 0], torch.full((8,), 2.0 * T)) and float(second.abs().sum()) == 0.0


def test_it_learns_a_small_batch():
    model = small_model(num_proposals=6)
    batch = batch_of([[[3.0, 9.0], [14.0, 26.0]], [[5.0, 20.0]]], [[0, 2], [1]])
    losses = []
    train_steps(model, batch, 30, lr=3e-3, losses=losses)
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------------------------------- detection
def test_forward_shapes():
    model = small_model(num_stages=3, action_head=True)
    outputs = model(torch.randn(2, C, T))
    assert outputs["logits"].shape == (2, 8, K) and outputs["segments"].shape == (2, 8, 2)
    assert outputs["stage_logits"].shape == (3, 2, 8, K) and outputs["stage_segments"].shape == (3, 2, 8, 2)
    assert outputs["levels"].shape == (3, 2, 8) and outputs["levels"].dtype == torch.int64
    assert outputs["initial_segments"].shape == (2, 8, 2) and outputs["video_logits"].shape == (2, K)
    assert outputs["num_snippets"] == T
    assert model(torch.randn(1, C, 50))["segments"].shape == (1, 8, 2)  # any T


def test_center_features_ignores_a_per_video_offset():
    model = small_model(center_features=True).eval()
    features = torch.randn(2, C, T)
    with torch.no_grad():
        a, b = model(features), model(features + torch.randn(2, C, 1) * 3)
    torch.testing.assert_close(a["logits"], b["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a["segments"], b["segments"], atol=1e-4, rtol=1e-4)


def test_detect_format_and_options():
    model = small_model(action_head=False).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, C, T))
    detections = model.detect(outputs)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"segments", "scores", "labels"} and det["labels"].dtype == torch.int64
        assert len(det["segments"]) == len(det["scores"]) == len(det["labels"]) == 8 * K  # top_k 100 > N K
        assert float(det["segments"].min()) >= 0 and float(det["segments"].max()) <= T
        assert bool((det["segments"][:, 1] > det["segments"][:, 0]).all())
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())
    probs = outputs["logits"][0].sigmoid().flatten().sort(descending=True).values
    torch.testing.assert_close(detections[0]["scores"], probs)
    assert len(model.detect(outputs, top_k=5)[0]["scores"]) == 5
    assert len(model.detect(outputs, classes_per_proposal=1)[0]["scores"]) == 8  # one class per proposal
    threshold = float(probs[3])
    assert bool((model.detect(outputs, score_threshold=threshold)[0]["scores"] > threshold).all())
    suppressed = model.detect(outputs, nms={"method": "hard", "iou_threshold": 0.5})[0]
    assert len(suppressed["scores"]) <= len(detections[0]["scores"])


def test_detect_clamps_segments_to_the_video_and_drops_empty_ones():
    model = small_model(num_proposals=3)
    segments = torch.tensor([[[-5.0, 10.0], [25.0, 40.0], [33.0, 40.0]]])
    logits = torch.tensor([[[2.0, 0.0, 1.0], [1.0, 0.0, -1.0], [3.0, 0.0, 0.0]]])  # distinct best classes
    kept = model.detect(hand_outputs(logits, segments, num_snippets=T), classes_per_proposal=1)[0]["segments"]
    assert kept.tolist() == [[0.0, 10.0], [25.0, float(T)]]  # [33, 40) lies wholly outside [0, 32]


def test_action_head_rescales_scores():
    model = small_model(action_head=True).eval()
    batch = batch_of([[[3.0, 9.0]]], [[2]])
    with torch.no_grad():
        outputs = model(batch["features"])
    assert "action" in model.loss(outputs, batch)
    with_head = model.detect(outputs, classes_per_proposal=1)[0]
    without = model.detect(outputs, classes_per_proposal=1, action_scores=False)[0]
    video = outputs["video_logits"][0].sigmoid()
    assert float(with_head["scores"][0]) <= float(without["scores"][0])
    expected = (outputs["logits"][0].sigmoid() * video).amax(-1).sort(descending=True).values
    torch.testing.assert_close(with_head["scores"], expected)


# ------------------------------------------------------------------------------------- the video-level head
def two_videos_of_different_classes() -> torch.Tensor:
    """(2, C, T) centred features: video 0 shows pattern a in snippets 4-9, video 1 pattern b, noise elsewhere."""
    torch.manual_seed(7)
    a, b = torch.randn(C), torch.randn(C)
    features = 0.1 * torch.randn(2, C, T)
    features[0, :, 4:10] += 2 * a[:, None]
    features[1, :, 4:10] += 2 * b[:, None]
    return features - features.mean(dim=2, keepdim=True)


def test_a_linear_map_of_centred_features_averages_to_its_bias():
    """Why the head cannot pool the plain temporal average (the issue's observation): with centred features the
    stem's temporal mean is its bias, whatever the video shows; so is a backbone level's when its residual convs
    are silent (avg-pooling is linear too)."""
    features = two_videos_of_different_classes()
    block = TemporalPyramid(C, 8, "intermediate")
    with torch.no_grad():
        stem = block.stem(features)
        torch.testing.assert_close(stem.mean(-1), block.stem.bias.expand(2, -1), atol=1e-6, rtol=0)
        for stage in block.backbone:
            stage.convs[-1].weight.zero_(), stage.convs[-1].bias.zero_()
        _, backbone = block(features)
    plain = torch.cat([level.mean(-1) for level in backbone], dim=-1)
    torch.testing.assert_close(plain[0], plain[1], atol=1e-6, rtol=0)  # the two videos look the same


def test_the_head_pools_activations_that_tell_videos_apart_and_train_the_stem():
    features = two_videos_of_different_classes()
    model = small_model(action_head=True)
    with torch.no_grad():
        for stage in model.pyramid.backbone:  # a purely linear backbone: the hardest case for the head
            stage.convs[-1].weight.zero_(), stage.convs[-1].bias.zero_()
        _, backbone = model.pyramid(features)
    pooled = video_features(backbone)  # (B, 3 d)
    assert pooled.shape == (2, 3 * SMALL["hidden"])
    assert float((pooled[0] - pooled[1]).abs().max()) > 0.05  # the videos' different evidence shows
    outputs = model(features)
    action = model.loss(outputs, batch_of([[[4.0, 10.0]], [[4.0, 10.0]]], [[0], [1]], features=features))["action"]
    grad, = torch.autograd.grad(action, model.pyramid.stem.weight)
    assert float(grad.abs().sum()) > 0  # the average of a linear map would give the stem no gradient
    # What it is: the temporal average of each level's ReLU activations, and the head's logits and scores of it.
    torch.testing.assert_close(pooled, torch.cat([level.clamp_min(0).mean(-1) for level in backbone], -1))
    torch.testing.assert_close(outputs["video_logits"], model.action_classifier(pooled))
    torch.testing.assert_close(outputs["video_scores"], outputs["video_logits"].sigmoid())


def test_detect_without_video_scores_and_with_oracle_classes():
    model = small_model(action_head=True).eval()
    batch = batch_of([[[3.0, 9.0], [12.0, 20.0]], [[5.0, 8.0]]], [[2, 0], [1]])
    with torch.no_grad():
        outputs = model(batch["features"])
    probs = outputs["logits"].sigmoid()
    plain = model.detect(outputs, action_scores=False)
    torch.testing.assert_close(plain[0]["scores"], probs[0].flatten().sort(descending=True).values)
    oracle = model.oracle_outputs(outputs, batch)
    assert oracle["video_scores"].tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]] and "video_scores" in outputs
    torch.testing.assert_close(outputs["video_scores"], outputs["video_logits"].sigmoid())  # outputs unchanged
    for b, present in enumerate(([0, 2], [1])):
        det = model.detect(oracle, top_k=1000)[b]
        assert sorted(set(det["labels"].tolist())) == present  # an absent class scores 0 and is dropped
        torch.testing.assert_close(det["scores"], probs[b][:, present].flatten().sort(descending=True).values)
    unheaded = small_model(action_head=False).eval()
    with torch.no_grad():
        outputs = unheaded(batch["features"])
    assert "video_scores" not in outputs  # the oracle works without a head too
    assert set(unheaded.detect(unheaded.oracle_outputs(outputs, batch))[1]["labels"].tolist()) == {1}


class _FixedOutputs(torch.nn.Module):
    """A stand-in detector whose forward returns hand-made last-stage segments and logits."""

    def __init__(self, segments, logits):
        super().__init__()
        self.segments, self.logits = segments, logits

    def forward(self, features):
        return {"segments": self.segments[: len(features)], "logits": self.logits[: len(features)]}


def test_diagnose_scores_classes_over_localised_instances_only():
    def item(name, segments, labels):
        return {"video_id": name, "features": torch.zeros(C, 20), "segments": torch.tensor(segments),
                "labels": torch.tensor(labels), "duration": 20.0}

    # Video a: instance 0 found by proposal 0 with its class; instance 1 ([10, 14), class 1) overlaps no proposal,
    # so its "best" proposal is an arbitrary one (proposal 0, top class 0): not a classification error.
    # Video b: its instance is found by proposal 0, whose top class is wrong.
    items = [item("a", [[2.0, 6.0], [10.0, 14.0]], [0, 1]), item("b", [[5.0, 9.0]], [2])]
    segments = torch.tensor([[[2.0, 6.0], [0.0, 1.0]], [[5.0, 9.0], [0.0, 1.0]]])
    logits = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]], [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])
    world = SimpleNamespace(dataset=lambda subset: items, num_snippets=20)
    found = diagnose(_FixedOutputs(segments, logits), world)
    assert found["localised"] == pytest.approx(2 / 3)
    assert found["best_class_right"] == pytest.approx(1 / 2)  # of the 2 localised instances, not 1/3 of all 3
    assert found["video_class_right"] == 0.0  # no head
    lost = diagnose(_FixedOutputs(segments + 15.0, logits), world)
    assert lost["localised"] == 0.0 and math.isnan(lost["best_class_right"])


def test_trains_with_fit_and_evaluates():
    world = make_world("thumos", num_videos=8, seed=0, num_snippets=32, feature_dim=C, num_classes=K)
    model = small_model()
    history = fit(model, world.dataset("training"), epochs=2, batch_size=4, lr=1e-3, device="cpu", progress=False)
    assert len(history.train["total"]) == 2 and "stage_2" in history.train
    metrics = evaluate(model, world.dataset("validation"), world.ground_truth, world.class_names, device="cpu")
    assert 0.0 <= float(metrics.average_mAP) <= 1.0


def test_video_score_metrics_measure_without_the_head_and_with_oracle_classes():
    from tadlab.diagnostics import evaluate_outputs
    from tadlab.eval import THUMOS_TIOU
    from tadlab.experiments import detection_metrics

    world = make_world("thumos", 10, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    model = small_model(action_head=True).eval()
    found = video_score_metrics(model, world, "testing", nms={})
    without = detection_metrics(model, world, THUMOS_TIOU, "testing", "cpu", action_scores=False, nms={})
    oracle = evaluate_outputs(model, world, THUMOS_TIOU, transform=model.oracle_outputs, device="cpu", nms={})
    assert found == {"average_mAP_without_video_scores": without["average_mAP"],
                     "average_mAP_oracle_video_classes": oracle["average_mAP"]}


def test_the_papers_recipe_runs_as_printed():
    """Sec. 4.1: AdamW, weight decay 1e-4, batch 16, lr 1e-4 for 12 epochs, then 1e-5 for 4."""
    assert PAPER_RECIPE == dict(epochs=16, lr=1e-4, batch_size=16, weight_decay=1e-4, optimizer="adamw",
                                schedule="step", step_epoch=12, step_factor=0.1)
    world = make_world("thumos", 8, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    model, history = train_sptad_as_printed(world, seed=0, **SMALL)
    assert history.epochs == 16 and model.config.num_proposals == SMALL["num_proposals"]
    # History.lr is the lr at the end of each epoch (the next step's): epochs 1-12 train at 1e-4, 13-16 at 1e-5.
    assert history.lr == pytest.approx([1e-4] * 11 + [1e-5] * 5)


# -------------------------------------------------------------------------------------------- cost and errors
def test_cost_counts_parameters_and_flops():
    model = small_model()
    cost = model.cost(num_snippets=T)
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    d, dh, n = SMALL["hidden"], SMALL["dynamic_dim"], SMALL["num_proposals"]
    assert cost["flops"] > SMALL["num_stages"] * 2 * n * d * 2 * d * dh  # the dynamic-parameter layers alone
    assert model.cost(num_snippets=T, batch_size=2)["flops"] == 2 * cost["flops"]
    big = thumos_size_cost(hidden=32, num_proposals=10, dynamic_dim=8)
    assert big["params_M"] > 0 and big["flops_G"] > 0 and big["num_stages"] == 4


def test_bad_arguments_are_named():
    for options, name in [({"pyramid": "top"}, "pyramid"), ({"assignment": "greedy"}, "assignment"),
                          ({"hidden": 10, "heads": 4}, "heads"), ({"num_stages": 0}, "num_stages"),
                          ({"top_level": 4}, "top_level"), ({"expand_ratio": 0}, "expand_ratio"),
                          ({"positive_iou": 1.5}, "positive_iou"), ({"proposal_init": "grid"}, "proposal_init")]:
        with pytest.raises(ValueError, match=name):
            SPTAD(C, K, **options)
    with pytest.raises(TypeError, match="unknown SPTAD options"):
        SPTAD(C, K, stages=3)
    with pytest.raises(TypeError, match="config"):
        SPTAD(C, K, config={"hidden": 16})
    with pytest.raises(ValueError, match="feature_dim"):
        SPTAD(0, K)
    model = small_model()
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(2, C + 1, T))
    outputs = model(torch.randn(1, C, T))
    with pytest.raises(ValueError, match="top_k"):
        model.detect(outputs, top_k=0)
    with pytest.raises(TypeError, match="nms"):
        model.detect(outputs, nms="soft")
    assert SPTADConfig().num_stages == 4 and SCALE_CLAMP > 0


@pytest.mark.cuda
@needs_cuda
def test_trains_and_detects_on_cuda():
    device = torch.device("cuda")
    model = small_model(action_head=True, assignment="one_to_many").to(device)
    batch = batch_of([[[3.0, 9.0], [14.0, 26.0]], [[5.0, 20.0]]], [[0, 2], [1]])
    batch = to_device(batch, device)
    terms = train_steps(model, batch, lr=1e-3)
    assert all(v.device.type == "cuda" for v in terms.values())
    model.eval()
    with torch.no_grad():
        outputs = model(batch["features"])
    detections = model.detect(outputs, nms={})
    assert detections[0]["segments"].device.type == "cuda"
    on_cpu = model.cpu()
    with torch.no_grad():
        cpu_outputs = on_cpu(batch["features"].cpu())
    torch.testing.assert_close(cpu_outputs["segments"], outputs["segments"].cpu(), atol=1e-4, rtol=1e-4)
