"""Gradient flow through every detector: on one small training batch of the synthetic world, every trainable
parameter receives a finite, non-zero gradient, and so does every boundary the detector predicts.

A dead gradient does not show in a loss curve that still falls; it shows here. SP-TAD's width update once clamped
its log-width delta from below as well as above, so a proposal that had to shrink past the clamp got no gradient
(its width could never move again); these tests would have caught it.

Protocol, the same for every detector: a tiny model, one AdamW step on the batch (so the output layers that a
detector zero-initialises on purpose, SP-TAD's boundary branch and the RRM's update head, have moved: until then the
layers that feed them get exactly zero gradient by design), then one forward and backward on the same batch.
"""
import math

import pytest
import torch

from tadlab.data.collate import collate_videos
from tadlab.data.synthetic import make_world
from tadlab.models import (BMN, GSMT, RRM, SPTAD, ActionFormer, SegTAD, SnippetClassifier,
                           TemporalContextClassifier)
from tadlab.models.rrm import CPU_CONFIG

C, K = 16, 4
OLD_SCALE_CLAMP = math.log(1000.0 / 16)  # the lower clamp SP-TAD's width update had (|dw| <= this)
TINY_SPTAD = dict(hidden=16, heads=2, dynamic_dim=4, num_proposals=12, num_stages=3, soi_points=4,
                  center_features=True)


def world_batch(num_snippets: int, videos: int = 3) -> dict:
    """A collated training batch of the thumos-like world (instances of 2 to ~20 snippets, as THUMOS's)."""
    world = make_world("thumos", 8, seed=0, num_snippets=num_snippets, feature_dim=C, num_classes=K)
    items = [item for item in world.dataset("training") if len(item["labels"])][:videos]
    return collate_videos(items)


def step_once(model: torch.nn.Module, batch: dict) -> None:
    """One AdamW step on ``batch`` (see the module docstring for why)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.loss(model(batch["features"]), batch)["total"].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def parameters_without_gradient(model: torch.nn.Module) -> list:
    """Names of the trainable parameters whose gradient is missing, not finite, or zero everywhere."""
    bad = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        grad = parameter.grad
        if grad is None or not bool(torch.isfinite(grad).all()) or float(grad.abs().sum()) == 0.0:
            bad.append(name)
    return bad


def sptad_boundaries_without_gradient(model: SPTAD, batch: dict) -> list:
    """Backward through ``model`` on ``batch``; the matched predictions whose raw boundary output gets no gradient
    although the loss gives their predicted centre or width one, as (stage, "centre" or "width", count).

    Each stage's boundary branch outputs (dc, dw) per proposal (the raw prediction, captured by a hook) and returns
    the refined (centre, width) = (c + w dc / 2, w exp(dw)): both maps have non-zero derivatives everywhere, so
    wherever the loss's gradient on the centre (width) is non-zero, dc's (dw's) must be too; a clamp, a detach or a
    zero factor on the way shows as a zero. The loss must reach every matched segment (L1 on its start and end
    always does), and unmatched predictions have no boundary loss (one-to-one matching). Leaves the parameters'
    gradients set."""
    model.zero_grad(set_to_none=True)
    raw, refined = [], []
    hooks = [hook for stage in model.stages for hook in (
        stage.regressor.register_forward_hook(lambda module, inputs, output: raw.append(output)),
        stage.register_forward_hook(lambda module, inputs, output: refined.append(output[1])))]
    outputs = model(batch["features"])
    for hook in hooks:
        hook.remove()
    total = model.loss(outputs, batch)["total"]
    grads = torch.autograd.grad(total, raw + refined, retain_graph=True)
    raw_grads, refined_grads = grads[:len(raw)], grads[len(raw):]
    total.backward()
    matched = model.assign(outputs["stage_logits"], outputs["stage_segments"], batch) >= 0  # (S, B, N)
    dead = []
    for s, (raw_grad, refined_grad) in enumerate(zip(raw_grads, refined_grads)):
        assert bool(torch.isfinite(raw_grad).all()), f"stage {s + 1}: non-finite boundary gradient"
        assert bool(matched[s].any()), f"stage {s + 1} has no matched prediction to check"
        reached = refined_grad[matched[s]]  # (P, 2): the loss's gradient on the matched centres and widths
        assert bool((reached != 0).any(-1).all()), f"stage {s + 1}: the loss misses a matched segment"
        for column, name in enumerate(("centre", "width")):
            cut = (reached[:, column] != 0) & (raw_grad[matched[s]][:, column] == 0)
            if bool(cut.any()):
                dead.append((s + 1, name, int(cut.sum())))
    return dead


# ----------------------------------------------------------------------------------------- every detector
def make_gsmt(T):
    return GSMT(C, K, T, hidden=16, heads=4, layers=1)


def make_bmn(T):
    return BMN(C, T, T // 2, hidden_1d=8, hidden_bm=4, hidden_3d=8, hidden_2d=6, num_samples=4, samples_per_bin=2,
               groups=2)


def make_bmn_rrm(T):
    rrm = RRM(6, 2, **CPU_CONFIG)  # narrower encoders (3 channels) can start with every ReLU off, by chance
    return BMN(C, T, T // 2, hidden_1d=8, hidden_bm=4, hidden_3d=8, hidden_2d=6, num_samples=4, samples_per_bin=2,
               groups=2, refine=rrm)


def make_segtad(T):
    return SegTAD(C, K, T, hidden=16, eta=4, graph_k=2, seeds=6, pdn_k=2)


def make_actionformer(T):  # three levels (strides 1, 2, 4): the batch has instances in every level's range
    return ActionFormer(C, K, hidden=16, heads=2, stem_layers=1, levels=3, window=5, head_layers=2,
                        center_features=True)


DETECTORS = {  # name: (constructor of T, T, the output entries that are predicted boundaries)
    "GSMT": (make_gsmt, 32, ()),
    "BMN": (make_bmn, 32, ("start_logits", "end_logits")),
    "BMN + RRM": (make_bmn_rrm, 32, ("start_logits", "end_logits")),
    "SegTAD": (make_segtad, 48, ("start_logits", "end_logits")),
    "naive baseline": (lambda T: SnippetClassifier(C, K, hidden_dim=16), 32, ()),
    "context baseline": (lambda T: TemporalContextClassifier(C, K, hidden_dim=16, dilations=(1, 2)), 32, ()),
    "ActionFormer": (make_actionformer, 48, ()),
}


def test_actionformer_every_positive_point_receives_a_gradient_on_both_distances():
    """ActionFormer's boundaries are the distances to start and end regressed at the positive points (centre
    sampling): each positive point's two distances get a gradient, the negatives' none (no regression loss)."""
    torch.manual_seed(0)
    model = make_actionformer(48)
    batch = world_batch(48)
    step_once(model, batch)
    outputs = model(batch["features"])
    total = model.loss(outputs, batch)["total"]
    (grad,) = torch.autograd.grad(total, [outputs["offsets"]])
    positive = model.targets(batch, 48)["gt_index"] >= 0
    assert bool(positive.any()) and bool(torch.isfinite(grad).all())
    assert bool((grad[positive] != 0).all()) and bool((grad[~positive] == 0).all())


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_parameter_and_boundary_output_receives_a_gradient(name):
    make, num_snippets, boundaries = DETECTORS[name]
    torch.manual_seed(0)
    model = make(num_snippets)
    batch = world_batch(num_snippets)
    model.train()
    step_once(model, batch)
    outputs = model(batch["features"])
    total = model.loss(outputs, batch)["total"]
    if boundaries:  # every snippet's start and end logit: a BCE term each, so a gradient each
        grads = torch.autograd.grad(total, [outputs[key] for key in boundaries], retain_graph=True)
        for key, grad in zip(boundaries, grads):
            assert bool(torch.isfinite(grad).all()) and bool((grad != 0).all()), f"{name}: {key} has dead entries"
    total.backward()
    assert parameters_without_gradient(model) == [], f"{name}: parameters without a gradient"


def test_sptad_every_parameter_and_every_matched_centre_and_width_receive_a_gradient():
    torch.manual_seed(0)
    model = SPTAD(C, K, **{**TINY_SPTAD, "num_proposals": 30})  # random proposals, wide enough to read every level
    batch = world_batch(256)
    step_once(model, batch)
    assert sptad_boundaries_without_gradient(model, batch) == []
    with torch.no_grad():
        read = model(batch["features"])["levels"].unique().tolist()
    assert read == [0, 1, 2, 3]  # a level no proposal reads rightly gets no gradient; here every level is read
    assert parameters_without_gradient(model) == []


def test_sptad_whole_video_proposals_pass_the_gradient_to_every_matched_centre_and_width():
    """Sparse R-CNN's initialisation: every proposal starts as the whole video. (All of them read the top level at
    first, so the finer levels' convolutions have no gradient yet; the boundaries must.)"""
    torch.manual_seed(0)
    model = SPTAD(C, K, **TINY_SPTAD, proposal_init="whole")
    batch = world_batch(256)
    step_once(model, batch)
    assert sptad_boundaries_without_gradient(model, batch) == []


def test_sptad_gradient_reaches_widths_a_trained_first_stage_predicts():
    """Stage 1 as training leaves it on a THUMOS-like world when the proposals start as the whole video (Sparse
    R-CNN's initialisation): its width delta is the log of (instance width / proposal width), here the batch's
    median instance over T = 256 snippets, log(2.6 / 256) = -4.6, below the old clamp -log(1000 / 16) = -4.1.
    Every matched width must still receive a gradient (the old lower clamp gave all of them exactly zero)."""
    torch.manual_seed(0)
    model = SPTAD(C, K, **TINY_SPTAD, proposal_init="whole")
    batch = world_batch(256)
    step_once(model, batch)
    lengths = (batch["segments"][..., 1] - batch["segments"][..., 0])[batch["labels"] >= 0]
    shrink = math.log(float(lengths.median()) / 256)
    assert shrink < -OLD_SCALE_CLAMP  # the state the old clamp could not leave
    with torch.no_grad():
        model.stages[0].regressor[-1].bias[1] += shrink * 1.0  # DELTA_WEIGHTS[1] = 1: dw = the raw output
    dead = sptad_boundaries_without_gradient(model, batch)
    assert dead == [], f"(stage, coordinate, matched predictions) without a gradient: {dead}"
    # (No parameter check here: after the shift no proposal reads level P2, so its output conv rightly gets none.)


def test_sptad_width_below_the_old_clamp_has_a_gradient_and_training_pulls_it_back():
    """A stage whose width delta sits at -6 (below the old clamp -4.1): d width / d delta is the width itself
    (width = w0 exp(dw)), not zero, and a few AdamW steps on a batch raise the delta towards the instances."""
    torch.manual_seed(0)
    model = SPTAD(C, K, **{**TINY_SPTAD, "num_stages": 1}, proposal_init="whole")
    batch = world_batch(256)
    with torch.no_grad():
        model.stages[0].regressor[-1].bias[1] = -6.0  # weights zero: every proposal predicts dw = -6
    outputs = model(batch["features"])
    widths = outputs["segments"][..., 1] - outputs["segments"][..., 0]  # (B, N) snippets
    grad, = torch.autograd.grad(widths.sum(), model.stages[0].regressor[-1].bias)
    torch.testing.assert_close(grad[1], widths.sum())  # d(w0 e^b)/db = w0 e^b, summed over B N proposals
    torch.testing.assert_close(widths, torch.full_like(widths, 256 * math.exp(-6.0)))
    # The matched widths (~0.6 snippets) are narrower than their instances (>= 2): the loss pulls dw back up.
    optimizer = torch.optim.AdamW(model.stages[0].regressor.parameters(), lr=1e-2)
    for _ in range(10):
        optimizer.zero_grad()
        model.loss(model(batch["features"]), batch)["total"].backward()
        optimizer.step()
    assert float(model.stages[0].regressor[-1].bias[1].detach()) > -6.0 + 0.05
