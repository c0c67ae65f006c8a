"""ActionFormer: centre-sampling targets on a hand-made video, local attention against dense attention, the pyramid's
geometry, the losses by hand, shapes and errors, learning one batch, reproducibility, detection, fit/evaluate, CUDA."""
import math

import pytest
import torch

from tadlab.data.synthetic import make_world
from tadlab.labels import ACTIONFORMER_RANGES, ACTIONFORMER_STRIDES, centre_sampling_assign
from tadlab.models import ActionFormer, ActionFormerConfig
from tadlab.models.actionformer import default_ranges, local_attention, offset_iou_loss, thumos_size_cost
from tadlab.train import evaluate, fit

from detector_checks import assert_reproducible_step, needs_cuda, to_device, train_steps

C, K, T = 6, 4, 64
SMALL = dict(hidden=16, heads=2, stem_layers=1, window=5)


def small_model(**overrides) -> ActionFormer:
    torch.manual_seed(0)
    return ActionFormer(C, K, **{**SMALL, **overrides})


def batch_of(segments_per_video, labels_per_video, features=None, num_snippets=T):
    """A collated batch (as collate_videos makes it) from per-video lists of [start, end) and labels."""
    count = max(1, max(len(s) for s in segments_per_video))
    size = len(segments_per_video)
    segments = torch.zeros(size, count, 2)
    labels = torch.full((size, count), -1, dtype=torch.int64)
    for b, (segs, labs) in enumerate(zip(segments_per_video, labels_per_video)):
        if segs:
            segments[b, : len(segs)] = torch.tensor(segs, dtype=torch.float32)
            labels[b, : len(labs)] = torch.tensor(labs)
    features = torch.randn(size, C, num_snippets) if features is None else features
    return {"video_ids": [f"v{b}" for b in range(size)], "features": features, "segments": segments,
            "labels": labels, "durations": torch.full((size,), float(num_snippets), dtype=torch.float64)}


def positives(targets, video=0):
    """{instance: [(level, point, (distance to start, distance to end) in snippets), ...]} of one video."""
    found = {}
    for p in (targets["gt_index"][video] >= 0).nonzero()[:, 0].tolist():
        stride = float(targets["strides"][p])
        distances = tuple(float(d) * stride for d in targets["offsets"][video, p])
        found.setdefault(int(targets["gt_index"][video, p]), []).append(
            (int(targets["levels"][p]), float(targets["points"][p]), distances))
    return found


# ------------------------------------------------------------------------------------------------ targets
# One video of T = 64 snippets: A = [8, 16) (class 2), B = [40, 42.5) (class 0), C = [0, 64) (class 1).
HAND_SEGMENTS = [[8.0, 16.0], [40.0, 42.5], [0.0, 64.0]]
HAND_LABELS = [2, 0, 1]


def test_pyramid_strides_and_ranges_are_the_papers():
    config = ActionFormerConfig()
    assert config.strides == ACTIONFORMER_STRIDES == (1, 2, 4, 8, 16, 32)
    assert config.ranges == default_ranges(6) == ACTIONFORMER_RANGES
    assert default_ranges(3) == ((0.0, 4.0), (4.0, 8.0), (8.0, math.inf))
    assert ActionFormerConfig(levels=2, regression_ranges=((0, 3), (3, 99))).ranges == ((0.0, 3.0), (3.0, 99.0))


def test_targets_on_a_hand_made_video():
    """Level l (stride s = 2^l) has points at (i + 0.5) s. A point is a positive of an instance [s0, e0) when it lies
    strictly inside the centre region [c - 1.5 s, c + 1.5 s] ∩ [s0, e0) (c the instance's centre) and its farther
    boundary is within the level's range: [0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, inf) snippets."""
    model = small_model(levels=6)
    batch = batch_of([HAND_SEGMENTS], [HAND_LABELS])
    targets = model.targets(batch, T)
    found = positives(targets)
    # A, centre 12. Level 0: region [10.5, 13.5] holds 11.5 and 12.5, but their farther boundary is 4.5 > 4 away.
    # Level 1: region [9, 15] holds 11 and 13 (9 and 15 sit on its edges); farther boundary 5 in [4, 8]. Level 2:
    # region [6, 18] ∩ [8, 16) holds 10 and 14, 6 from their farther boundary: under 8. Level 3 and up: too close.
    assert found[0] == [(1, 11.0, (3.0, 5.0)), (1, 13.0, (5.0, 3.0))]
    # B, 2.5 snippets long, centre 41.25: level 0, region [39.75, 42.75] ∩ [40, 42.5) holds 40.5 and 41.5.
    assert found[1] == [(0, 40.5, (0.5, 2.0)), (0, 41.5, (1.5, 1.0))]
    # C, the whole video, centre 32: level 4 (stride 16), region [8, 56] holds 24 and 40, both 40 from their farther
    # boundary, in [32, 64]; level 5's points 16 and 48 are 48 from theirs, under 64.
    assert found[2] == [(4, 24.0, (24.0, 40.0)), (4, 40.0, (40.0, 24.0))]
    classes = targets["classes"][0]
    assert classes.shape == (len(targets["points"]), K)
    for instance, label in enumerate(HAND_LABELS):
        for level, point, _ in found[instance]:
            p = int(((targets["levels"] == level) & (targets["points"] == point)).nonzero()[0])
            assert classes[p].tolist() == [float(k == label) for k in range(K)]
    assert int(classes.sum()) == 6  # no other point is a positive
    # The regression target is the distance to each boundary divided by the stride (what the model regresses).
    assert targets["offsets"][0, 64 + 5].tolist() == [1.5, 2.5]  # level 1 starts at index 64; point 11 is its 6th


def test_centre_sampling_radius_widens_the_positives():
    batch = batch_of([HAND_SEGMENTS[:1]], [HAND_LABELS[:1]])
    # radius 2.5: level 1's region becomes [7, 17] ∩ [8, 16): points 9 and 15 join (farther boundary 7 <= 8).
    wide = positives(small_model(levels=6, radius=2.5).targets(batch, T))[0]
    assert [(level, point) for level, point, _ in wide] == [(1, 9.0), (1, 11.0), (1, 13.0), (1, 15.0)]
    # radius 0.5: the region [11, 13] has 11 and 13 on its edges, so instance A gets no positive at all.
    assert positives(small_model(levels=6, radius=0.5).targets(batch, T)) == {}


def test_inclusive_range_edges_and_custom_ranges():
    batch = batch_of([[[8.0, 16.0]]], [[2]])
    # ranges [0, 5] at level 0: points 11.5 and 12.5 (farther boundary 4.5) now count; level 1 gets [5, 8].
    model = small_model(levels=2, regression_ranges=((0, 5), (5, 8)))
    assert [(level, point) for level, point, _ in positives(model.targets(batch, T))[0]] == [
        (0, 11.5), (0, 12.5), (1, 11.0), (1, 13.0)]


def test_double_annotation_gives_both_classes():
    """THUMOS14 annotates every CliffDiving as Diving too: the same segment under two classes."""
    batch = batch_of([[[8.0, 16.0], [8.0, 16.0]]], [[2, 3]])
    multi = small_model(levels=6).targets(batch, T)
    rows = multi["classes"][0][multi["gt_index"][0] >= 0]
    assert rows.tolist() == [[0.0, 0.0, 1.0, 1.0]] * 2
    single = small_model(levels=6, multi_label=False).targets(batch, T)
    assert single["classes"][0][single["gt_index"][0] >= 0].tolist() == [[0.0, 0.0, 1.0, 0.0]] * 2
    alone = centre_sampling_assign(torch.tensor([[8.0, 16.0]]), torch.tensor([2]), T, K, multi_label=True)
    assert alone["classes"].shape == (len(alone["points"]), K)


def test_model_points_are_the_assignments_points():
    model = small_model(levels=4)
    for length in (T, 45):
        outputs = model(torch.randn(1, C, length))
        targets = model.targets(batch_of([[[2.0, 9.0]]], [[1]], num_snippets=length), length)
        for name in ("points", "strides", "levels"):
            assert torch.equal(outputs[name], targets[name].to(outputs[name].dtype))


# ------------------------------------------------------------------------------------------ encoder pieces
def dense_attention(query, key, value, heads, window):
    """The reference: full softmax attention with every pair further apart than window // 2 masked."""
    batch, dim, length = query.shape
    split = lambda x: x.reshape(batch, heads, dim // heads, length).transpose(2, 3)
    scores = split(query) @ split(key).transpose(-2, -1) / math.sqrt(dim // heads)
    position = torch.arange(length)
    if window is not None:
        scores = scores.masked_fill((position[:, None] - position[None]).abs() > window // 2, float("-inf"))
    return (scores.softmax(-1) @ split(value)).transpose(2, 3).reshape(batch, dim, length)


@pytest.mark.parametrize("length", [1, 2, 7, 19, 64, 101])
@pytest.mark.parametrize("window", [1, 3, 9, 19, None])
def test_local_attention_equals_masked_dense_attention(length, window):
    torch.manual_seed(length)
    q, k, v = (torch.randn(2, 8, length, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(local_attention(q, k, v, 2, window), dense_attention(q, k, v, 2, window))


def test_local_attention_sees_only_its_window():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 40, requires_grad=True) for _ in range(3))
    out = local_attention(q, k, v, 2, 7)
    grad, = torch.autograd.grad(out[0, :, 20].sum(), v)
    assert (grad[0].abs().sum(0) > 0).nonzero()[:, 0].tolist() == list(range(17, 24))  # cells 20 - 3 .. 20 + 3


@pytest.mark.parametrize("length, sizes", [(64, [64, 32, 16, 8, 4, 2]), (45, [45, 23, 12, 6, 3, 2])])
def test_pyramid_level_sizes(length, sizes):
    model = small_model(levels=6).eval()
    levels = model.pyramid(torch.randn(2, C, length))
    assert [tuple(level.shape) for level in levels] == [(2, 16, n) for n in sizes]
    assert [math.ceil(length / s) for s in model.config.strides] == sizes


def test_pyramid_cells_are_centred_on_their_points():
    """With palindromic conv kernels everything but the cell pairing is symmetric in time, so reversing the video
    reverses every level exactly when a cell pools the input pair (2i, 2i + 1), i.e. sits at (i + 0.5) s. (Centring
    cell i on input cell 2i, as a 3-wide stride-2 kernel does, would break this.)"""
    model = small_model(levels=6, window=3).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d) and module.kernel_size[0] > 1:
                module.weight.copy_((module.weight + module.weight.flip(-1)) / 2)
        features = torch.randn(2, C, T)
        forward, backward = model.pyramid(features), model.pyramid(features.flip(-1))
    for a, b in zip(forward, backward):
        torch.testing.assert_close(a.flip(-1), b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------- losses
def test_offset_iou_losses_by_hand():
    predicted, target = torch.tensor([[1.0, 1.0], [2.0, 3.0]]), torch.tensor([[1.0, 3.0], [2.0, 3.0]])
    # [-1, 1) against [-1, 3): IoU 2/4, centres 0 and 1, enclosing length 4 -> DIoU loss 1 - 0.5 + (1/4)^2.
    torch.testing.assert_close(offset_iou_loss(predicted, target, "diou"), torch.tensor([0.5625, 0.0]))
    # Both contain the point 0, so the enclosing segment is the union and GIoU = IoU.
    torch.testing.assert_close(offset_iou_loss(predicted, target, "giou"), torch.tensor([0.5, 0.0]))


def test_loss_by_hand():
    """All logits 0 (p = 1/2) and all predicted distances 1 stride: focal and DIoU terms by hand."""
    model = small_model(levels=6)
    batch = batch_of([HAND_SEGMENTS[:2]], [HAND_LABELS[:2]])
    targets = model.targets(batch, T)
    count = len(targets["points"])
    outputs = {"logits": torch.zeros(1, count, K), "offsets": torch.ones(1, count, 2), "num_snippets": T,
               "points": targets["points"], "strides": targets["strides"], "levels": targets["levels"]}
    terms = model.loss(outputs, batch)
    positive, log2 = 4, math.log(2)
    focal = positive * 0.25 * 0.25 * log2 + (count * K - positive) * 0.75 * 0.25 * log2
    assert math.isclose(float(terms["classification"]), focal / positive, rel_tol=1e-5)
    # Predicted [-1, 1) strides; targets (1.5, 2.5) and (2.5, 1.5) at level 1, (0.5, 2) and (1.5, 1) at level 0.
    expected = offset_iou_loss(torch.ones(4, 2), torch.tensor([[0.5, 2.0], [1.5, 1.0], [1.5, 2.5], [2.5, 1.5]]))
    assert math.isclose(float(terms["regression"]), float(expected.sum()) / positive, rel_tol=1e-5)
    assert math.isclose(float(terms["total"]), float(terms["classification"] + terms["regression"]), rel_tol=1e-6)
    assert float(terms["positives"]) == positive
    weighted = small_model(levels=6, regression_weight=2.0).loss(outputs, batch)
    assert math.isclose(float(weighted["total"]), float(terms["classification"] + 2 * terms["regression"]),
                        rel_tol=1e-6)


def test_loss_with_videos_without_instances():
    model = small_model()
    outputs = model(torch.randn(2, C, T))
    mixed = model.loss(outputs, batch_of([[[3.0, 9.0]], []], [[2], []]))
    empty = model.loss(outputs, batch_of([[], []], [[], []]))
    assert torch.isfinite(mixed["total"]) and torch.isfinite(empty["total"])
    assert float(empty["regression"].detach()) == 0.0 and float(empty["classification"].detach()) > 0
    empty["total"].backward()  # still a graph: the focal loss of the all-negative points


def test_it_learns_a_small_batch():
    model = small_model()
    batch = batch_of([[[3.0, 9.0], [14.0, 30.0]], [[5.0, 20.0], [40.0, 42.0]]], [[0, 2], [1, 3]])
    losses = []
    train_steps(model, batch, 40, lr=3e-3, losses=losses)
    assert losses[-1] < 0.15 * losses[0]


def test_every_parameter_gets_a_gradient():
    """With an instance for every level (reach 2 to 96 snippets), one AdamW step, then every trainable parameter,
    each level's regression scale and layer scale included, gets a finite, non-zero gradient."""
    length = 128
    model = small_model(levels=6, drop_path=0.0)
    segments = [[10.0, 12.0], [20.0, 28.0], [40.0, 56.0], [60.0, 92.0], [0.0, 64.0], [0.0, 128.0]]
    batch = batch_of([segments, segments[:3]], [[0, 1, 2, 3, 0, 1], [3, 2, 1]], num_snippets=length)
    levels = model.targets(batch, length)
    assert sorted({level for found in positives(levels).values() for level, _, _ in found}) == list(range(6))
    train_steps(model, batch, steps=1, lr=1e-3)
    model.zero_grad(set_to_none=True)
    model.loss(model(batch["features"]), batch)["total"].backward()
    dead = [name for name, parameter in model.named_parameters() if parameter.grad is None
            or not bool(torch.isfinite(parameter.grad).all()) or float(parameter.grad.abs().sum()) == 0.0]
    assert dead == []


def test_same_seed_same_step():
    # drop_path draws random numbers in training: the seeded step must still repeat exactly.
    assert_reproducible_step(lambda: small_model(drop_path=0.5),
                             lambda: batch_of([[[3.0, 9.0], [14.0, 30.0]], [[5.0, 20.0]]], [[0, 2], [1]]))


# ------------------------------------------------------------------------------------------------- detection
def test_forward_shapes():
    model = small_model(levels=4)
    with torch.no_grad():
        outputs = model(torch.randn(2, C, T))
    points = T + T // 2 + T // 4 + T // 8
    assert outputs["logits"].shape == (2, points, K) and outputs["offsets"].shape == (2, points, 2)
    assert outputs["points"].shape == outputs["strides"].shape == outputs["levels"].shape == (points,)
    assert outputs["levels"].dtype == torch.int64 and outputs["num_snippets"] == T
    assert bool((outputs["offsets"] >= 0).all())
    # the regression bias of 1: both distances start above the ReLU's dead 0 at most points
    assert float((outputs["offsets"] > 0).float().mean(dim=(0, 1)).min()) > 0.5
    # the classifier starts at the prior probability 0.01 (its bias), up to what the random weights add
    assert abs(float(outputs["logits"].sigmoid().median()) - 0.01) < 0.01


def test_center_features_ignores_a_per_video_offset():
    model = small_model(center_features=True).eval()
    features = torch.randn(2, C, T)
    with torch.no_grad():
        a, b = model(features), model(features + torch.randn(2, C, 1) * 3)
    torch.testing.assert_close(a["logits"], b["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a["offsets"], b["offsets"], atol=1e-4, rtol=1e-4)


def test_positional_encoding_breaks_translation_equivariance():
    features = torch.randn(1, C, T)
    shifted = features.roll(8, dims=-1)
    for positional in (False, True):
        model = small_model(positional=positional, window=None, levels=1).eval()
        with torch.no_grad():
            a, b = model(features)["logits"][0], model(shifted)["logits"][0]
        # far from the borders a shift of the video shifts the outputs, unless absolute positions are added
        assert torch.allclose(a[20:40], b[28:48], atol=1e-5) is (not positional)


def hand_detect_outputs(logits, offsets, points, strides):
    return {"logits": logits, "offsets": offsets, "points": points, "strides": strides, "num_snippets": 20}


def test_detect_decodes_distances_and_clamps():
    points, strides = torch.tensor([5.5, 3.0, 18.0]), torch.tensor([1.0, 2.0, 4.0])
    logits = torch.tensor([[[3.0, -9.0], [-9.0, 2.0], [1.0, -9.0]]])  # one clear class per point
    offsets = torch.tensor([[[1.5, 2.5], [1.0, 2.0], [1.0, 3.0]]])  # in strides
    detections = ActionFormer(C, 2).detect(hand_detect_outputs(logits, offsets, points, strides), nms=None)[0]
    top = detections["segments"][:3].tolist()
    # [5.5 - 1.5, 5.5 + 2.5), [3 - 2, 3 + 4), [18 - 4, 18 + 12) clipped to the video's 20 snippets
    assert top == [[4.0, 8.0], [1.0, 7.0], [14.0, 20.0]]
    assert detections["labels"][:3].tolist() == [0, 1, 0]
    torch.testing.assert_close(detections["scores"][:3], torch.tensor([3.0, 2.0, 1.0]).sigmoid())


def test_detect_format_and_options():
    model = small_model().eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, C, T))
    detections = model.detect(outputs, score_threshold=0.0, min_length=0.0, nms=None, top_k=10_000)
    count = outputs["logits"].shape[1] * K
    for det in detections:
        assert set(det) == {"segments", "scores", "labels"} and det["labels"].dtype == torch.int64
        assert float(det["segments"].min()) >= 0 and float(det["segments"].max()) <= T
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())
        assert bool(((det["labels"] >= 0) & (det["labels"] < K)).all())
        assert len(det["scores"]) <= min(count, 2000)  # the best ``candidates`` (point, class) pairs
    assert len(model.detect(outputs, nms=None, top_k=7)[0]["scores"]) == 7
    nms = model.detect(outputs)[0]
    assert len(nms["scores"]) <= 200 and bool((nms["segments"][:, 1] - nms["segments"][:, 0] > 0.05).all())
    threshold = float(detections[0]["scores"][10])
    assert bool((model.detect(outputs, score_threshold=threshold, nms=None)[0]["scores"] > threshold).all())
    hard = model.detect(outputs, nms={"method": "hard", "iou_threshold": 0.3})[0]
    assert len(hard["scores"]) <= len(nms["scores"])


def test_trains_with_fit_and_evaluates():
    world = make_world("thumos", num_videos=8, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    model = small_model()
    history = fit(model, world.dataset("training"), epochs=2, batch_size=4, lr=1e-3, device="cpu", progress=False)
    assert len(history.train["total"]) == 2 and "regression" in history.train
    metrics = evaluate(model, world.dataset("validation"), world.ground_truth, world.class_names, device="cpu")
    assert 0.0 <= float(metrics.average_mAP) <= 1.0


# -------------------------------------------------------------------------------------------- cost and errors
def test_cost_counts_parameters_and_flops():
    model = small_model()
    cost = model.cost(num_snippets=T)
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    assert model.cost(num_snippets=2 * T)["flops"] > cost["flops"] > 0
    big = thumos_size_cost(num_snippets=256)
    assert big["params_M"] > 1 and big["flops_G"] > 0


@pytest.mark.parametrize("options, message", [
    (dict(hidden=30, heads=4), "divisible"), (dict(window=4), "window"), (dict(window=0), "window"),
    (dict(levels=0), "levels"), (dict(regression_loss="l1"), "regression_loss"), (dict(radius=0), "radius"),
    (dict(regression_ranges=((0, 4),)), "regression_ranges"), (dict(head_kernel=2), "head_kernel"),
    (dict(drop_path=1.0), "drop_path"), (dict(prior_prob=0.0), "prior_prob"), (dict(layer_scale=0.0), "layer_scale"),
])
def test_bad_options_fail_early(options, message):
    with pytest.raises(ValueError, match=message):
        ActionFormer(C, K, **options)


def test_bad_inputs_fail_early():
    with pytest.raises(TypeError, match="unknown ActionFormer options"):
        ActionFormer(C, K, hiden=16)
    with pytest.raises(TypeError, match="positional"):
        ActionFormer(C, K, positional="fixed")
    with pytest.raises(ValueError, match="feature_dim"):
        ActionFormer(0, K)
    model = small_model()
    with pytest.raises(ValueError, match=r"\(B, 6, T\)"):
        model(torch.randn(2, C + 1, T))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0] * T] * C)
    outputs = model(torch.randn(1, C, T))
    with pytest.raises(ValueError, match="top_k"):
        model.detect(outputs, top_k=0)
    with pytest.raises(TypeError, match="nms"):
        model.detect(outputs, nms="soft")
    with pytest.raises(ValueError, match="segments must satisfy"):
        model.loss(outputs, batch_of([[[9.0, 3.0]]], [[0]]))
    with pytest.raises(ValueError, match="labels must be"):
        model.loss(outputs, batch_of([[[3.0, 9.0]]], [[K]]))
    with pytest.raises(TypeError, match="multi_label"):
        centre_sampling_assign(torch.tensor([[1.0, 3.0]]), torch.tensor([0]), T, K, multi_label=1)


# ---------------------------------------------------------------------------------------------------- CUDA
@needs_cuda
def test_trains_and_detects_on_cuda():
    device = torch.device("cuda")
    model = small_model().to(device)
    batch = to_device(batch_of([[[3.0, 9.0], [14.0, 30.0]], [[5.0, 20.0]]], [[0, 2], [1]]), device)
    terms = train_steps(model, batch, lr=1e-3)
    assert all(v.device.type == "cuda" for v in terms.values())
    model.eval()
    with torch.no_grad():
        outputs = model(batch["features"])
    detections = model.detect(outputs)
    assert detections[0]["segments"].device.type == "cuda" and len(detections[0]["scores"]) > 0
    on_cpu = model.cpu()
    with torch.no_grad():
        cpu_outputs = on_cpu(batch["features"].cpu())
    torch.testing.assert_close(cpu_outputs["logits"], outputs["logits"].cpu(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cpu_outputs["offsets"], outputs["offsets"].cpu(), atol=1e-4, rtol=1e-4)
