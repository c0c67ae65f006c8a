"""Notebook 05's experiments: SP-TAD (:mod:`tadlab.models.sptad`) on the THUMOS-like world of
:func:`tadlab.experiments.standard_world`, its CPU recipe, and what the notebook measures of a trained model.

The notebook and the results workflow's study (:mod:`tadlab.studies.sptad`) import this module; the study's stage
and variant jobs call :func:`job_rows` (one :data:`VARIANTS` row: one change to the headline model, one seed).

Every measurement (:func:`measure`) is on one subset of the world of its seed: average mAP and mAP per tIoU
(THUMOS's 0.3:0.7), the duplicate share (:func:`duplicate_share`), localisation and classification apart
(:func:`diagnose`; classification over the localised instances only), the per-length breakdown (:func:`duration`)
and the mAP without the action head's scores and with an oracle's video classes (:func:`video_score_metrics`).
:func:`train_sptad_as_printed` trains with the paper's own recipe (:data:`PAPER_RECIPE`).
"""
from __future__ import annotations

import torch

from tadlab.data.collate import collate_videos
from tadlab.diagnostics import DURATION_EDGES, duration_breakdown, evaluate_outputs
from tadlab.eval import THUMOS_TIOU
from tadlab.experiments import detection_metrics, standard_world
from tadlab.models.sptad import SPTAD
from tadlab.segments import segment_iou
from tadlab.train import fit, predict
from tadlab.utils import seed_everything

# The CPU model, against SPTADConfig's defaults: d = 64 instead of 256 (the paper's pyramid width), N = 30 proposals
# instead of 50 (the paper's for THUMOS), 4 attention heads instead of 8 and d_h = 16 instead of 64 (both Sparse
# R-CNN's values; the paper gives neither), T' = 8 instead of 16 (the paper gives no T'; 16 is tadlab's default).
MODEL = dict(hidden=64, heads=4, num_proposals=30, num_stages=4, dynamic_dim=16, soi_points=8, center_features=True)
# Training: AdamW with a cosine schedule, batch 8, weight decay 1e-4 and gradient clipping at norm 1 (Sparse R-CNN's
# optimiser, decay and clipping; its lr 2.5e-5 at batch 16 is for COCO; we choose lr on validation). The paper's own
# recipe is PAPER_RECIPE.
TRAIN = dict(batch_size=8, weight_decay=1e-4, clip_grad_norm=1.0)
# SP-TAD as printed (Sec. 4.1, Implementation Details): AdamW, weight decay 1e-4, batch 16, lr 1e-4 for the first 12
# epochs and 1e-5 for the following 4. The paper names no warm-up and no gradient clipping.
PAPER_RECIPE = dict(epochs=16, lr=1e-4, batch_size=16, weight_decay=1e-4, optimizer="adamw", schedule="step",
                    step_epoch=12, step_factor=0.1)
LONG_EPOCHS = {"smoke": 1, "ci": 8, "full": 60}  # the job rows: 20 epochs at "full" left SP-TAD under-trained
RECIPE_LRS = (1e-3, 3e-3)
RECIPE = {"lr": 3e-3}  # the choice of the validation sweep (results/05_recipe_validation.json), see the notebook
DUPLICATE_IOU = 0.7


def train_sptad(world, seed: int, epochs: int, lr: float, device="cpu", train: dict | None = None, **overrides):
    """An SP-TAD of :data:`MODEL` (with ``overrides``) trained with :func:`tadlab.train.fit` on ``world``'s training
    videos with :data:`TRAIN`'s options (``train`` replaces them); returns ``(model, history)``."""
    seed_everything(seed)
    model = SPTAD(world.feature_dim, world.num_classes, **{**MODEL, **overrides})
    history = fit(model, world.dataset("training"), epochs=epochs, lr=lr, seed=seed, device=device, progress=False,
                  **(TRAIN if train is None else train))
    return model, history


def train_sptad_as_printed(world, seed: int, device="cpu", **overrides):
    """:func:`train_sptad` with the paper's recipe, :data:`PAPER_RECIPE` (16 epochs, lr 1e-4 then 1e-5)."""
    recipe = dict(PAPER_RECIPE)
    epochs, lr = recipe.pop("epochs"), recipe.pop("lr")
    return train_sptad(world, seed, epochs, lr, device, train=recipe, **overrides)


def duplicate_share(detections: list, top: int = 10) -> float:
    """Of every video's ``top`` best detections (:func:`tadlab.train.predict`'s list), the share that overlaps a
    better-scored detection of the same class at tIoU >= 0.7: detections that an NMS would remove or decay."""
    duplicates, total = 0, 0
    for det in detections:
        order = det["scores"].argsort(descending=True)[:top]
        segments, labels = det["segments"][order], det["labels"][order]
        if len(order) < 2:
            total += len(order)
            continue
        overlap = segment_iou(segments, segments)
        earlier = torch.ones_like(overlap, dtype=torch.bool).tril(-1)  # row i, column j < i: a better detection
        same = labels[:, None] == labels[None, :]
        duplicates += int(((overlap >= DUPLICATE_IOU) & same & earlier).any(1).sum())
        total += len(order)
    return duplicates / max(total, 1)


@torch.no_grad()
def diagnose(model, world, subset: str = "testing", device="cpu", iou: float = 0.5, items=None) -> dict:
    """Localisation and classification apart, over the instances of ``subset`` (or of ``items``, e.g. the windows
    of :func:`tadlab.windows.crop_windows`, when given):

    - ``localised``: the share of all instances that some last-stage proposal overlaps by tIoU >= ``iou`` (whatever
      its class);
    - ``best_class_right``: over the *localised instances only*, the share whose best-overlapping proposal has the
      instance's class as its top class (an instance no proposal overlaps says nothing of classification: its
      "best" proposal would be an arbitrary one); NaN when no instance is localised;
    - ``video_class_right``: the share of all instances whose class is the video-level head's top class (0 without
      the head).
    """
    items = list(world.dataset(subset)) if items is None else list(items)
    model = model.to(device).eval()
    localised = class_right = video_right = total = 0
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        outputs = model(collate_videos(chunk)["features"].to(device))
        for i, item in enumerate(chunk):
            if len(item["labels"]) == 0:
                continue
            length = item["features"].shape[-1]
            overlap = segment_iou(item["segments"], outputs["segments"][i].cpu().clamp(0, length))
            found = overlap.amax(1) >= iou  # (M,) instances some proposal localises
            best = overlap.argmax(1)  # (M,) each instance's best-overlapping proposal
            top_class = outputs["logits"][i].cpu()[best].argmax(-1)
            localised += int(found.sum())
            class_right += int(((top_class == item["labels"]) & found).sum())
            if "video_logits" in outputs:
                video_right += int((outputs["video_logits"][i].cpu().argmax() == item["labels"]).sum())
            total += len(item["labels"])
    return {"localised": localised / max(total, 1),
            "best_class_right": class_right / localised if localised else float("nan"),
            "video_class_right": video_right / max(total, 1)}


def measure(model, world, subset: str = "testing", device="cpu", **detect_kwargs) -> dict:
    """average mAP, mAP per tIoU (THUMOS's 0.3:0.7), the duplicate share, :func:`diagnose`, the per-length
    breakdown of ``model`` on ``subset``, and :func:`video_score_metrics`."""
    metrics = detection_metrics(model, world, THUMOS_TIOU, subset, device, **detect_kwargs)
    items = list(world.dataset(subset))
    detections = predict(model, items, device=device, **detect_kwargs)  # shared by the duplicates and the lengths
    return {**metrics, "duplicates": duplicate_share(detections), **diagnose(model, world, subset, device),
            "duration": duration(detections, items),
            **video_score_metrics(model, world, subset, device, **detect_kwargs)}


def video_score_metrics(model, world, subset: str = "testing", device="cpu", **detect_kwargs) -> dict:
    """What the video-level scores do to the detections (Sec. 3.2.2 multiplies the action head's scores into every
    detection's): ``average_mAP_without_video_scores`` (``detect(..., action_scores=False)``) and
    ``average_mAP_oracle_video_classes`` (the ground truth's classes of each video in place of the head's scores,
    :meth:`~tadlab.models.sptad.SPTAD.oracle_outputs`), average mAP (THUMOS's tIoU 0.3:0.7) on ``subset``."""
    detect_kwargs = {key: value for key, value in detect_kwargs.items() if key != "action_scores"}
    without = detection_metrics(model, world, THUMOS_TIOU, subset, device, action_scores=False, **detect_kwargs)
    oracle = evaluate_outputs(model, world, THUMOS_TIOU, transform=model.oracle_outputs, subset=subset, device=device,
                              **detect_kwargs)
    return {"average_mAP_without_video_scores": without["average_mAP"],
            "average_mAP_oracle_video_classes": oracle["average_mAP"]}


def duration(detections: list, items: list) -> dict:
    """:func:`tadlab.diagnostics.duration_breakdown` of ``detections`` (one per item): per THUMOS length bin (DETAD's
    XS to XL, cut at 3, 6, 12 and 18 s), the instances' mean best same-class tIoU and share found at tIoU 0.5."""
    return duration_breakdown(detections, items, DURATION_EDGES["thumos"])


# One change each to the headline model (S = 4, N = 30, one-to-one, intermediate-output pyramid, LONG_EPOCHS):
# the workflow's jobs of 05_stages.json and 05_variants.json (tadlab.studies.sptad), paired with the headline's rows.
VARIANTS = {
    "S=1": {"num_stages": 1}, "S=2": {"num_stages": 2}, "S=6": {"num_stages": 6},
    "one-to-many": {"assignment": "one_to_many"},
    "N=10": {"num_proposals": 10}, "N=60": {"num_proposals": 60},
    "pyramid on the last layer": {"pyramid": "last"}, "last layer only": {"pyramid": "single"},
    "twice the epochs": {"epoch_factor": 2},  # is the headline model still under-trained at LONG_EPOCHS?
}
WITH_SOFT_NMS = ("one-to-many",)  # also decoded with Soft-NMS: does NMS help more after one-to-many matching?


def job_rows(variant: str, seed: int, profile: str, device="cpu") -> dict:
    """One :data:`VARIANTS` row for one seed on ``standard_world("thumos", profile, seed)``, trained
    :data:`LONG_EPOCHS` epochs (twice as many for "twice the epochs") at the headline's learning rate, measured on
    testing by :func:`measure`: ``{row: metrics}`` (with its Soft-NMS row for :data:`WITH_SOFT_NMS`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    world = standard_world("thumos", profile, seed)
    overrides = dict(VARIANTS[variant])
    epochs = overrides.pop("epoch_factor", 1) * LONG_EPOCHS[profile]
    model, history = train_sptad(world, seed, epochs, RECIPE["lr"], device, **overrides)
    extra = {"final_loss": float(history.train["total"][-1]), "epochs": epochs}
    rows = {variant: {**measure(model, world, device=device), **extra}}
    if variant in WITH_SOFT_NMS:
        rows[f"{variant} + Soft-NMS"] = {**measure(model, world, device=device, nms={}), **extra}
    return rows
