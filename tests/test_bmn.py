"""BMN: the sampling tensor against direct interpolation, the map's shape and validity, the losses on hand-made cases,
decoding (BMN's Soft-NMS and the old one), the proposal x video-class combination, cost, training with fit, the
measurements of tadlab.bmn_measures (grid ceiling by hand and against the official evaluation, predictions and
metrics against the protocol's), bad arguments, CUDA."""
import math

import numpy as np
import pytest
import torch

from tadlab.bmn_measures import (bmn_predictions, grid_cells, grid_ceiling, grid_ceiling_proposals,
                                 grid_ceiling_recall, measure_bmn)
from tadlab.data.schema import detections_to_results
from tadlab.eval import ANET_TIOU, evaluate_proposals
from tadlab.experiments import detection_metrics
from tadlab.data.collate import collate_videos
from tadlab.labels import boundary_labels, boundary_matching_map, boundary_matching_valid
from tadlab.models import BMN, RRM, ProposalDetector, VideoClassifier
from tadlab.models.bmn import (BoundaryMatchingLayer, balanced_bce, boundary_candidates, boundary_matching_weights,
                               decode_boundary_matching, map_losses, proposal_cells, regression_sample,
                               sample_positions)
from tadlab.models.video_classifier import combine_proposals_with_classes, video_class_targets

from detector_checks import needs_cuda, to_device, train_steps

C, T, D = 8, 12, 10
TINY = dict(hidden_1d=8, hidden_bm=4, hidden_3d=8, hidden_2d=6, num_samples=4, samples_per_bin=2, groups=2)


def small_model(**kwargs) -> BMN:
    torch.manual_seed(0)
    return BMN(C, T, D, **{**TINY, **kwargs})


def one_video_batch(segments, labels, features=None):
    segments = torch.tensor(segments, dtype=torch.float32).reshape(1, -1, 2)
    labels = torch.tensor(labels, dtype=torch.int64).reshape(1, -1)
    features = torch.randn(1, C, T) if features is None else features
    return {"video_ids": ["v"], "features": features, "segments": segments, "labels": labels,
            "durations": torch.tensor([float(T)], dtype=torch.float64)}


# ------------------------------------------------------------------------------------------ the sampling tensor
def direct_sample(features: np.ndarray, d: int, t: int, num_samples: int, per_bin: int, ratio: float) -> np.ndarray:
    """Bins of proposal [t, t + d + 1) by np.interp over the features at snippet centres, zero outside the video."""
    length = d + 1
    points = np.linspace(t - ratio * length, t + length + ratio * length, num_samples * per_bin)
    centres = np.concatenate([[-0.5], np.arange(features.shape[1]) + 0.5, [features.shape[1] + 0.5]])
    bins = []
    for channel in features:
        values = np.interp(points, centres, np.concatenate([[0.0], channel, [0.0]]), left=0.0, right=0.0)
        bins.append(values.reshape(num_samples, per_bin).mean(axis=1))
    return np.stack(bins)  # (C, N)


@pytest.mark.parametrize("num_samples, per_bin, ratio", [(32, 3, 0.5), (5, 1, 0.5), (4, 2, 0.0), (7, 3, 0.25)])
def test_sampling_tensor_equals_direct_interpolation(num_samples, per_bin, ratio):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, T, generator=generator, dtype=torch.float64)
    weights = boundary_matching_weights(T, D, num_samples, per_bin, ratio, dtype=torch.float64).to_dense()
    cells = proposal_cells(T, D)
    sampled = (features @ weights).reshape(3, num_samples, len(cells))
    for p, (d, t) in enumerate(cells.tolist()):
        expected = direct_sample(features.numpy(), d, t, num_samples, per_bin, ratio)
        np.testing.assert_allclose(sampled[:, :, p].numpy(), expected, atol=1e-12)


def test_dense_and_sparse_layers_agree_and_keep_gradients():
    features = torch.randn(2, 5, T, requires_grad=True)
    dense = BoundaryMatchingLayer(T, D, 6, 3, sampling="dense")
    sparse = BoundaryMatchingLayer(T, D, 6, 3, sampling="sparse")
    a, b = dense(features), sparse(features)
    assert a.shape == b.shape == (2, 5, 6, len(proposal_cells(T, D)))
    assert torch.allclose(a, b, atol=1e-6)
    (grad_a,) = torch.autograd.grad(a.square().sum(), features)
    (grad_b,) = torch.autograd.grad(b.square().sum(), features)
    assert torch.allclose(grad_a, grad_b, atol=1e-5)
    assert dense.memory_bytes() == T * 6 * len(proposal_cells(T, D)) * 4
    assert sparse.memory_bytes() == sparse.weights._nnz() * (4 + 2 * 8)


def test_sampling_tensor_memory_at_paper_size_is_the_documented_one():
    weights = boundary_matching_weights(100, 100, 32, 3)
    assert weights.shape == (100, 32 * 5050) and weights._nnz() == 478_336  # as the bmn module docstring states
    assert round(weights._nnz() * 20 / 1e6, 1) == 9.6 and round(100 * 32 * 5050 * 4 / 1e6, 1) == 64.6


def test_sample_positions_cover_the_extended_proposal():
    positions = sample_positions(torch.tensor([[3, 4]]), num_samples=4, samples_per_bin=2)  # proposal [4, 8), L = 4
    assert positions.shape == (1, 4, 2)
    assert float(positions.min()) == 2.0 and float(positions.max()) == 10.0  # extended by L/2 = 2 on both sides
    assert torch.allclose(positions.flatten().diff(), torch.full((7,), 8 / 7, dtype=torch.float64))


def test_cells_and_valid_mask_match_the_labels():
    cells = proposal_cells(T, D)
    assert len(cells) == sum(T - d for d in range(D))
    assert bool((cells[:, 0] + cells[:, 1] + 1 <= T).all())
    assert torch.equal(small_model().valid, boundary_matching_valid(T, D))


# ------------------------------------------------------------------------------------------ forward
def test_forward_shapes_and_ranges():
    with torch.no_grad():
        outputs = small_model()(torch.randn(3, C, T))
    assert outputs["start"].shape == outputs["end"].shape == outputs["start_logits"].shape == (3, T)
    assert outputs["map_logits"].shape == outputs["confidence"].shape == (3, 2, D, T)
    assert torch.equal(outputs["map_logits"], outputs["initial_map_logits"]) and "refined_map_logits" not in outputs
    for key in ("start", "end", "confidence"):
        assert 0 <= float(outputs[key].min()) and float(outputs[key].max()) <= 1


def test_center_features_ignores_a_per_video_offset():
    model = small_model(center_features=True).eval()
    features = torch.randn(2, C, T)
    with torch.no_grad():
        a, b = model(features), model(features + torch.randn(2, C, 1) * 3)
    assert torch.allclose(a["map_logits"], b["map_logits"], atol=1e-5) and torch.allclose(a["start"], b["start"],
                                                                                           atol=1e-5)


def test_invalid_cells_see_no_proposal_features():
    model = small_model()
    with torch.no_grad():
        sampled = model.bm_layer(model.pem_1d(model.base(torch.randn(1, C, T))))
    assert sampled.shape[-1] == int(model.valid.sum())


def test_state_dict_skips_the_sampling_tensor_and_reloads():
    model = small_model().eval()
    state = model.state_dict()
    assert not any(key.startswith("bm_layer.") for key in state) and "valid" not in state  # rebuilt from the config
    other = BMN(C, T, D, **TINY).eval()
    other.load_state_dict(state)
    features = torch.randn(2, C, T)
    with torch.no_grad():
        assert torch.equal(model(features)["map_logits"], other(features)["map_logits"])


# ------------------------------------------------------------------------------------------ losses
def test_balanced_bce_by_hand():
    logits = torch.tensor([0.0, 2.0, -1.0, 3.0, 0.5])
    positive = torch.tensor([True, True, False, False, False])
    pos = (-math.log(0.5) - math.log(1 / (1 + math.exp(-2)))) / 2
    neg = (-math.log(1 - 1 / (1 + math.exp(1))) - math.log(1 - 1 / (1 + math.exp(-3)))
           - math.log(1 - 1 / (1 + math.exp(-0.5)))) / 3
    assert math.isclose(float(balanced_bce(logits, positive)), 0.5 * pos + 0.5 * neg, rel_tol=1e-6)
    # BMN's weights 0.5 n / n_pos and 0.5 n / n_neg over the mean of all n entries give the same number
    n, n_pos, n_neg = 5, 2, 3
    bmn = -(0.5 * n / n_pos * positive * torch.nn.functional.logsigmoid(logits)
            + 0.5 * n / n_neg * ~positive * torch.nn.functional.logsigmoid(-logits)).mean()
    assert math.isclose(float(balanced_bce(logits, positive)), float(bmn), rel_tol=1e-6)
    considered = torch.tensor([True, False, True, True, True])  # drops a positive
    assert math.isclose(float(balanced_bce(logits, positive, considered)), 0.5 * math.log(2) + 0.5 * neg,
                        rel_tol=1e-6)
    assert math.isclose(float(balanced_bce(logits, torch.zeros(5, dtype=torch.bool))), 0.5 * float(
        -torch.nn.functional.logsigmoid(-logits).mean()), rel_tol=1e-6)  # no positive: that half is 0


@pytest.mark.parametrize("sample_zero_iou", [True, False])
def test_regression_sample_keeps_all_high_cells_and_balances_the_rest(sample_zero_iou):
    iou = torch.zeros(1, 20, 50)
    iou[0, 0, :10] = 0.8  # 10 high
    iou[0, 1, :40] = 0.5  # 40 middle
    iou[0, 2:6] = 0.1  # 200 low in (0, 0.3]; rows 6-9 (200 cells) and the end of row 1 overlap nothing: tIoU 0
    valid = torch.ones(20, 50, dtype=torch.bool)
    valid[10:] = False
    iou[0, 10:] = 0.2  # low but invalid
    counts = []
    for seed in range(20):
        sample = regression_sample(iou, valid, sample_zero_iou=sample_zero_iou,
                                   generator=torch.Generator().manual_seed(seed))
        assert bool(sample[0, 0, :10].all()) and not bool(sample[0, 10:].any())  # all high, never invalid
        zero = int(sample[0, 6:10].sum() + sample[0, 1, 40:].sum())
        counts.append((int(sample[0, 1, :40].sum()), int(sample[0, 2:6].sum()) + zero, zero))
    middle, low, zero = np.mean(counts, axis=0)
    assert 6 < middle < 14 and 6 < low < 14  # about n_high = 10 each (of 40 middle and 210 or 410 low cells)
    assert (zero > 2) if sample_zero_iou else (zero == 0)  # tIoU-0 cells: about half the low draw, or never
    few_middle = iou.clone()
    few_middle[0, 1, 3:] = 0.0  # 3 middle cells < n_high: all kept
    assert bool(regression_sample(few_middle, valid)[0, 1, :3].all())


def test_regression_sample_groups_by_hand():
    # high (0.7, 1], middle (0.3, 0.7], low [0, 0.3] (the authors' code) or (0, 0.3] (the PyTorch port). Three high
    # cells and no more than three in each other group: every grouped cell is kept, whatever the random draw.
    iou = torch.tensor([[[0.8, 0.9, 1.0, 0.7, 0.3, 1e-4, 0.0]]])
    valid = torch.ones(1, 7, dtype=torch.bool)
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        assert regression_sample(iou, valid, generator=generator)[0, 0].tolist() == [True] * 7
        sample = regression_sample(iou, valid, sample_zero_iou=False, generator=generator)
        assert sample[0, 0].tolist() == [True] * 6 + [False]


def test_the_loss_samples_tiou_zero_cells_as_configured():
    batch = one_video_batch([[2.0, 6.0]], [0])
    logits = torch.zeros(1, 2, D, T)
    outputs = {"start_logits": torch.zeros(1, T), "end_logits": torch.zeros(1, T), "initial_map_logits": logits,
               "map_logits": logits}
    iou = small_model().targets(batch)["iou"]
    for sample_zero_iou in (True, False):
        model = small_model(sample_zero_iou=sample_zero_iou)
        torch.manual_seed(3)
        regression = model.loss(outputs, batch)["regression"]
        torch.manual_seed(3)
        expected, _ = map_losses(logits, iou, model.valid, regression_sample(iou, model.valid,
                                                                           sample_zero_iou=sample_zero_iou))
        assert float(regression) == pytest.approx(float(expected))


def test_map_losses_by_hand():
    iou = torch.tensor([[[0.95, 0.2], [0.6, 0.0]]])  # (B, D, T) = (1, 2, 2), all valid
    valid = torch.ones(2, 2, dtype=torch.bool)
    logits = torch.zeros(1, 2, 2, 2)
    sample = torch.tensor([[[True, False], [True, True]]])
    regression, classification = map_losses(logits, iou, valid, sample)
    assert math.isclose(float(regression), 0.5 * ((0.5 - 0.95) ** 2 + (0.5 - 0.6) ** 2 + 0.25) / 3, rel_tol=1e-6)
    assert math.isclose(float(classification), math.log(2), rel_tol=1e-6)  # p = 0.5 on both sides
    perfect = torch.logit(iou.clamp(1e-6, 1 - 1e-6))[:, None].repeat(1, 2, 1, 1)
    perfect[:, 1] = torch.where(iou > 0.9, 30.0, -30.0)
    regression, classification = map_losses(perfect, iou, valid, sample)
    assert float(regression) < 1e-10 and float(classification) < 1e-10


def test_bmn_loss_terms_with_uninformative_outputs():
    model = small_model()
    batch = one_video_batch([[2.0, 6.0]], [0])
    zeros = torch.zeros(1, 2, D, T)
    outputs = {"start_logits": torch.zeros(1, T), "end_logits": torch.zeros(1, T), "initial_map_logits": zeros,
               "map_logits": zeros}
    terms = model.loss(outputs, batch)
    assert math.isclose(float(terms["tem"]), 2 * math.log(2), rel_tol=1e-6)  # start and end: ln 2 each
    assert math.isclose(float(terms["classification"]), math.log(2), rel_tol=1e-6)
    assert float(terms["refinement"]) == 0 and float(terms["regression"]) > 0
    assert math.isclose(float(terms["total"]), float(terms["tem"] + 10 * terms["regression"] + terms["classification"]),
                        rel_tol=1e-6)


def test_targets_come_from_the_library_labels():
    model = small_model()
    batch = one_video_batch([[2.0, 6.0], [7.5, 11.0]], [0, 1])
    targets = model.targets(batch)
    start, end = boundary_labels(batch["segments"], T, width=3.0, labels=batch["labels"])
    assert torch.equal(targets["start"], start) and torch.equal(targets["end"], end)
    assert torch.equal(targets["iou"], boundary_matching_map(batch["segments"], T, D, labels=batch["labels"]))
    assert float(targets["iou"][0, 3, 2]) == 1.0  # the proposal [2, 6) is the instance


def test_loss_backpropagates_to_every_parameter():
    model = small_model(refine=RRM(TINY["hidden_2d"], iterations=2, hidden_dim=4, context_dim=3, encoder_dim=3,
                                   motion_dim=5, head_dim=4))
    batch = one_video_batch([[2.0, 6.0], [7.0, 11.0]], [0, 1])
    terms = model.loss(model(batch["features"]), batch)
    terms["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_few_steps_fit_one_batch():
    model = small_model()
    batch = one_video_batch([[2.0, 6.0], [7.0, 11.0]], [0, 1])
    losses = []  # seed=0: the same regression sample every step
    train_steps(model, batch, 30, lr=1e-2, optimizer=torch.optim.Adam, seed=0, losses=losses)
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------------------------ inference
def test_boundary_candidates_are_peaks_or_above_half_the_maximum():
    probs = torch.tensor([[0.1, 0.3, 0.2, 0.05, 0.9, 0.5, 0.6, 0.1]])
    starts = boundary_candidates(probs, first=True)
    assert starts.tolist() == [[True, True, False, False, True, True, True, False]]  # 0.5 > 0.45; 0.3 a peak
    ends = boundary_candidates(probs, first=False)
    assert ends.tolist() == [[False, True, False, False, True, True, True, True]]


def test_decoding_a_hand_made_map_finds_the_proposal():
    start, end = torch.full((1, T), 0.05), torch.full((1, T), 0.05)
    start[0, 3], end[0, 7] = 0.9, 0.8  # starts at snippet 3, ends after snippet 7: [3, 8), d = 4
    confidence = torch.full((1, 2, D, T), 0.1)
    confidence[0, :, 4, 3] = torch.tensor([0.9, 0.4])
    [det] = decode_boundary_matching(start, end, confidence, boundary_matching_valid(T, D), top_k=5)
    assert det["segments"][0].tolist() == [3.0, 8.0]
    assert math.isclose(float(det["scores"][0]), 0.9 * 0.8 * 0.9 * 0.4, rel_tol=1e-6)
    [det] = decode_boundary_matching(start, end, confidence, boundary_matching_valid(T, D), fusion="sqrt")
    assert math.isclose(float(det["scores"][0]), 0.9 * 0.8 * math.sqrt(0.9 * 0.4), rel_tol=1e-6)
    assert len(det["scores"]) <= 100
    # with peaks, only starts {0 (first), 3} and ends {7, 11 (last)} pair up: at most 4 proposals
    [det] = decode_boundary_matching(start, end, confidence, boundary_matching_valid(T, D), candidates="peaks")
    assert {tuple(s) for s in det["segments"].tolist()} <= {(0.0, 8.0), (3.0, 8.0), (3.0, 12.0), (0.0, 12.0)}
    [det] = decode_boundary_matching(start, end, confidence, boundary_matching_valid(T, D), candidates="all",
                                     top_k=1000)
    assert len(det["scores"]) == int(boundary_matching_valid(T, D).sum())


def test_detect_uses_bmn_soft_nms_by_default_and_keeps_the_old_one():
    # T = 12. Start candidates {0}, end candidates {5, 7, 11}: two valid proposals, [0, 8) (score 0.9 * 0.9, width
    # 8/12, so BMN decays only tIoU > 0.5 + 0.4 * 2/3 = 0.767) and [0, 6) (0.9 * 0.8, tIoU 0.75 with [0, 8)).
    start, end = torch.full((1, T), 0.05), torch.full((1, T), 0.05)
    start[0, 0], end[0, 7], end[0, 5] = 0.9, 0.9, 0.8
    confidence = torch.full((1, 2, D, T), 0.1)
    confidence[0, :, 7, 0] = 1.0  # [0, 8)
    confidence[0, :, 5, 0] = 1.0  # [0, 6)
    valid = boundary_matching_valid(T, D)
    first, second, decay = 0.9 * 0.9, 0.9 * 0.8, math.exp(-0.75 ** 2 / 0.4)
    [det] = decode_boundary_matching(start, end, confidence, valid)  # BMN's Soft-NMS: [0, 6) keeps its score
    assert det["segments"].tolist() == [[0.0, 8.0], [0.0, 6.0]]
    torch.testing.assert_close(det["scores"], torch.tensor([first, second]))
    [old] = decode_boundary_matching(start, end, confidence, valid, nms="gaussian")  # every overlap decays
    assert old["segments"].tolist() == [[0.0, 8.0], [0.0, 6.0]]
    torch.testing.assert_close(old["scores"], torch.tensor([first, second * decay]))
    [low] = decode_boundary_matching(start, end, confidence, valid, nms_thresholds=(0.3, 0.6))  # 0.5 < 0.75
    torch.testing.assert_close(low["scores"], torch.tensor([first, second * decay]))
    model = small_model().eval()
    outputs = {"start": start, "end": end, "confidence": confidence}
    torch.testing.assert_close(model.detect(outputs)[0]["scores"], det["scores"])
    torch.testing.assert_close(model.detect(outputs, nms="gaussian")[0]["scores"], old["scores"])


def test_detect_returns_the_standard_format():
    model = small_model().eval()
    with torch.no_grad():
        outputs = model(torch.randn(3, C, T))
    detections = model.detect(outputs, top_k=7)
    assert len(detections) == 3
    for det in detections:
        assert set(det) == {"segments", "scores", "labels"}
        assert det["segments"].shape == (len(det["scores"]), 2) and 0 < len(det["scores"]) <= 7
        assert det["labels"].dtype == torch.int64 and bool((det["labels"] == 0).all())
        assert bool((det["segments"][:, 0] < det["segments"][:, 1]).all())
        assert float(det["segments"].min()) >= 0 and float(det["segments"].max()) <= T
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())


def test_combining_proposals_with_video_classes_by_hand():
    proposals = [{"segments": torch.tensor([[0.0, 4.0], [5.0, 9.0]]), "scores": torch.tensor([0.8, 0.5]),
                  "labels": torch.zeros(2, dtype=torch.int64)}]
    class_scores = torch.tensor([[0.1, 0.9, 0.6]])
    [det] = combine_proposals_with_classes(proposals, class_scores, top_classes=1)
    assert det["labels"].tolist() == [1, 1] and torch.allclose(det["scores"], torch.tensor([0.72, 0.45]))
    [det] = combine_proposals_with_classes(proposals, class_scores, top_classes=2)
    assert det["labels"].tolist() == [1, 2, 1, 2]
    assert torch.allclose(det["scores"], torch.tensor([0.72, 0.48, 0.45, 0.30]))
    assert det["segments"].tolist() == [[0, 4], [0, 4], [5, 9], [5, 9]]
    model = small_model().eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, C, T))
    plain = model.detect(outputs)
    [det] = model.detect(outputs, class_scores=class_scores, top_classes=2)
    assert len(det["scores"]) == 2 * len(plain[0]["scores"]) and set(det["labels"].tolist()) == {1, 2}


def test_video_class_targets_and_classifier_loss():
    labels = torch.tensor([[2, 0, -1], [1, 1, -1], [-1, -1, -1]])
    assert video_class_targets(labels, 3).tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    classifier = VideoClassifier(C, 3, hidden=8)
    outputs = classifier(torch.randn(3, C, T))
    assert outputs["logits"].shape == outputs["probs"].shape == (3, 3)
    terms = classifier.loss({"logits": torch.zeros(3, 3)}, {"labels": labels})
    assert math.isclose(float(terms["total"]), math.log(2), rel_tol=1e-6)


def test_proposal_detector_trains_with_fit_and_evaluates():
    from tadlab.data.synthetic import make_world
    from tadlab.train import evaluate, fit

    world = make_world("anet", num_videos=12, seed=0, num_snippets=T, feature_dim=C, num_classes=3)
    detector = ProposalDetector(BMN(C, T, D, **TINY), VideoClassifier(C, 3, hidden=8))
    history = fit(detector, world.dataset("training"), epochs=2, batch_size=4, device="cpu", progress=False)
    assert {"total", "tem", "classifier"} <= set(history.train)
    metrics = evaluate(detector, world.dataset("validation"), world.ground_truth, world.class_names, device="cpu")
    assert 0 <= float(metrics.average_mAP) <= 1


# ------------------------------------------------------------------------------------------ measurements
def test_grid_ceiling_by_hand():
    instances = torch.tensor([[2.5, 6.0], [0.0, 10.0], [7.2, 7.4]], dtype=torch.float64)
    best, cells = grid_ceiling(instances, 10)  # D = T = 10: every cell up to the whole video
    # [2.5, 6): [2, 6) reaches 3.5 / 4 = 0.875 ([3, 6): 3 / 3.5 = 0.857); [0, 10) is a cell; [7.2, 7.4): [7, 8), 0.2
    torch.testing.assert_close(best, torch.tensor([0.875, 1.0, 0.2], dtype=torch.float64))
    assert cells.tolist() == [[2.0, 6.0], [0.0, 10.0], [7.0, 8.0]]
    best, cells = grid_ceiling(instances, 10, max_duration=5)  # no cell longer than 5: [0, 10) gets 5 / 10
    assert float(best[1]) == 0.5 and cells[1, 1] - cells[1, 0] == 5
    assert len(grid_cells(10, 5)) == len(proposal_cells(10, 5)) == 40  # 10 + 9 + 8 + 7 + 6 valid cells
    # recall at 0.5:0.05:0.95: two of three instances up to 0.85, one from 0.9 on -> mean (8 * 2 + 2 * 1) / 30
    ceiling = grid_ceiling_recall([instances, torch.zeros(0, 2)], 10)
    assert ceiling["num_instances"] == 3
    np.testing.assert_allclose(ceiling["recall"], [2 / 3] * 8 + [1 / 3] * 2)
    assert math.isclose(ceiling["AR@100"], 0.6)
    assert grid_ceiling_recall([{"segments": instances}], 10)["AR@100"] == ceiling["AR@100"]  # items as well


def tiny_world():
    from tadlab.data.synthetic import make_world
    return make_world("anet", num_videos=20, seed=0, num_snippets=T, feature_dim=C, num_classes=3)


def test_grid_ceiling_is_the_official_recall_of_its_proposals_and_bounds_any_grid_detector():
    world = tiny_world()
    items = list(world.dataset("training"))
    ceiling = grid_ceiling_recall(items, T, D)
    proposals = grid_ceiling_proposals(items, T, D)
    ids, durations = [v["video_id"] for v in items], [v["duration"] for v in items]
    official = evaluate_proposals(world.ground_truth, detections_to_results(proposals, ids, durations, T, ["a"]),
                                  subset="training")
    assert math.isclose(official.ar_at(100), ceiling["AR@100"], abs_tol=1e-9)
    np.testing.assert_allclose(official.recall[:, -1], ceiling["recall"], atol=1e-9)
    assert ceiling["AR@100"] < 1  # the synthetic instances do not sit on the grid
    torch.manual_seed(0)
    model, classifier = BMN(C, T, D, **TINY), VideoClassifier(C, 3, hidden=8)
    for oracle in (None, "map", "map+boundaries"):  # no grid detector beats it, however it ranks
        row = measure_bmn(model, classifier, world, "training", oracle=oracle, candidates="all", top_k=1000)
        assert row["AR@100"] <= ceiling["AR@100"] + 1e-9


def test_measure_bmn_equals_the_protocol_and_the_oracles_read_the_targets():
    world = tiny_world()
    torch.manual_seed(0)
    model, classifier = BMN(C, T, D, **TINY), VideoClassifier(C, 3, hidden=8)
    detector = ProposalDetector(model, classifier)
    for options in ({}, {"candidates": "all"}, {"candidates": "all", "nms": "gaussian"}):
        row = measure_bmn(model, classifier, world, "validation", **options)
        protocol = detection_metrics(detector, world, ANET_TIOU, "validation", device="cpu", **options)
        assert math.isclose(row["average_mAP"], protocol["average_mAP"], abs_tol=1e-12)
        assert row["AR@10"] is not None and 0 <= row["AR@100"] <= 1 and row["subset"] == "validation"
    items = list(world.dataset("validation"))
    own = bmn_predictions(model, classifier, items, batch_size=3)
    targets = model.targets(collate_videos(items))
    torch.testing.assert_close(own["iou"], targets["iou"])
    with torch.no_grad():
        torch.testing.assert_close(own["confidence"], model.eval()(collate_videos(items)["features"])["confidence"])
    oracle = bmn_predictions(model, classifier, items, oracle="map")
    assert torch.equal(oracle["confidence"][:, 0], targets["iou"]) and torch.equal(oracle["confidence"][:, 1],
                                                                                    targets["iou"])
    assert measure_bmn(model, classifier, world, "validation", oracle="map")["map_error"] == 0.0
    assert len(own["proposals"]) == len(own["detections"]) == len(items)
    with pytest.raises(ValueError, match="oracle must be None"):
        bmn_predictions(model, classifier, items, oracle="boundaries")
    with pytest.raises(ValueError, match="needs a BMN with an RRM"):
        bmn_predictions(model, classifier, items, iterations=2)
    with pytest.raises(TypeError, match="classifier must be a VideoClassifier"):
        bmn_predictions(model, model, items)
    with pytest.raises(ValueError, match="no instance"):
        grid_ceiling_recall([torch.zeros(0, 2)], T)
    with pytest.raises(ValueError, match=r"videos\[0\] must be an \(N, 2\) tensor"):
        grid_ceiling_recall([torch.zeros(3)], T)


# ------------------------------------------------------------------------------------------ cost
def test_cost_counts_the_sparse_matmul_and_grows_with_iterations():
    dense, sparse = small_model(), small_model(sampling="sparse")
    cost_dense, cost_sparse = dense.cost(), sparse.cost()
    assert cost_dense["params"] == cost_sparse["params"] == sum(p.numel() for p in dense.parameters())
    rows = TINY["hidden_bm"]
    columns = TINY["num_samples"] * len(proposal_cells(T, D))
    nnz = sparse.bm_layer.weights._nnz()
    assert cost_dense["flops"] - 2 * rows * T * columns == cost_sparse["flops"] - 2 * nnz * rows
    refined = small_model(refine=RRM(TINY["hidden_2d"], iterations=3, hidden_dim=4, context_dim=3))
    flops = [refined.cost(iterations=n)["flops"] for n in (0, 1, 2, 5)]
    assert flops[0] == cost_dense["flops"]  # zero iterations is plain BMN
    step = flops[2] - flops[1]  # one more update; the first also pays for the context network
    assert step > 0 and flops[1] - flops[0] > step and flops[3] - flops[2] == 3 * step
    assert refined.cost()["iterations"] == 3 and dense.cost(batch_size=2)["flops"] == 2 * cost_dense["flops"]


# ------------------------------------------------------------------------------------------ arguments and devices
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sampling"):
        small_model(sampling="banded")
    with pytest.raises(ValueError, match="max_duration"):
        BMN(C, T, T + 1, **TINY)
    with pytest.raises(ValueError, match="groups"):
        BMN(C, T, D, **{**TINY, "groups": 3})
    with pytest.raises(TypeError, match="num_samples"):
        small_model(num_samples=2.5)
    with pytest.raises(ValueError, match="features"):
        small_model()(torch.randn(1, C, T + 1))
    with pytest.raises(ValueError, match="refine.feature_dim"):
        small_model(refine=RRM(7))
    with pytest.raises(TypeError, match="refine"):
        small_model(refine=torch.nn.Identity())
    with pytest.raises(ValueError, match="iterations"):
        small_model()(torch.randn(1, C, T), iterations=2)
    outputs = small_model().eval()(torch.randn(1, C, T))
    with pytest.raises(ValueError, match="fusion"):
        small_model().detect(outputs, fusion="mean")
    with pytest.raises(ValueError, match="candidates"):
        small_model().detect(outputs, candidates="some")
    with pytest.raises(TypeError, match="sample_zero_iou must be a bool"):
        small_model(sample_zero_iou=1)
    with pytest.raises(ValueError, match="nms must be one of"):
        small_model().detect(outputs, nms="hard")
    with pytest.raises(ValueError, match="nms_thresholds must be a pair"):
        small_model().detect(outputs, nms_thresholds=0.5)
    with pytest.raises(ValueError, match=r"nms_thresholds\[1\] must lie in"):
        small_model().detect(outputs, nms_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="top_classes"):
        combine_proposals_with_classes([{"segments": torch.zeros(0, 2), "scores": torch.zeros(0)}],
                                       torch.rand(1, 3), top_classes=4)
    with pytest.raises(ValueError, match="class_scores"):
        combine_proposals_with_classes([], torch.rand(1, 3))
    with pytest.raises(TypeError, match="classifier"):
        ProposalDetector(small_model(), torch.nn.Identity())


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("sampling", ["dense", "sparse"])
def test_trains_and_detects_on_cuda(sampling):
    device = torch.device("cuda")
    model = small_model(sampling=sampling, refine=RRM(TINY["hidden_2d"], iterations=2, hidden_dim=4,
                                                      context_dim=3)).to(device)
    batch = one_video_batch([[2.0, 6.0], [7.0, 11.0]], [0, 1])
    batch = to_device(batch, device)
    terms = train_steps(model, batch, lr=1e-2)
    assert all(v.device.type == "cuda" for v in terms.values())
    model.eval()
    with torch.no_grad():
        outputs = model(batch["features"])
    [det] = model.detect(outputs)
    assert det["segments"].device.type == "cuda"
    cpu_model = model.to("cpu")
    with torch.no_grad():
        cpu_outputs = cpu_model(batch["features"].cpu())
    assert torch.allclose(cpu_outputs["map_logits"], outputs["map_logits"].cpu(), atol=1e-4)
