"""Diagnostics of a trained detector beyond its mAP: decoding edited outputs, mask quality, a duration breakdown.

Notebook 04 asks of GSMT *which part* limits it, as GSMT Table 6 and the DETAD-style analysis of its appendix do:

- :func:`evaluate_outputs`: mAP after editing the model's outputs, e.g. with the ground truth in place of the class
  map or of the masks (``transform=lambda outputs, batch: model.oracle_outputs(outputs, batch, masks=True)``);
- :func:`mask_quality`: how good the class map and the masks are on the foreground snippets, and how often the
  bIoU loss's coefficient lambda = 1/(|Phi(G) n Phi(P)| + eps) sits at its cap e^8 (the bands do not meet);
- :func:`duration_breakdown`: per instance-length bin, how well the best detection of each instance overlaps it.
"""
from __future__ import annotations

import numpy as np
import torch

from tadlab.data.collate import collate_videos
from tadlab.utils import check_choice, resolve_device

DURATION_BINS = ("XS", "S", "M", "L", "XL")
# DETAD's length edges in seconds (Alwassel et al. 2018): ActivityNet 30/60/120/180 s; THUMOS14 3/6/12/18 s.
DURATION_EDGES = {"anet": (30.0, 60.0, 120.0, 180.0), "thumos": (3.0, 6.0, 12.0, 18.0)}


def _batches(model, items, device, batch_size):
    """Yield (batch on device, outputs) for ``items`` in order, the model in eval mode, without gradients."""
    model.to(device)
    model.eval()
    for start in range(0, len(items), batch_size):
        batch = collate_videos(items[start:start + batch_size])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.no_grad():
            yield batch, model(batch["features"])


def evaluate_outputs(model, world, tiou_thresholds, transform=None, subset: str = "testing", device="auto",
                     batch_size: int = 32, **detect_kwargs) -> dict:
    """ActivityNet mAP of ``model`` on a subset of a synthetic ``world``, after ``transform(outputs, batch)`` edits
    each batch's outputs (None: unedited, the same numbers as :func:`tadlab.experiments.detection_metrics`).

    Returns a JSON-able dict: ``average_mAP``, ``mAP`` (per threshold), ``tiou_thresholds`` and ``subset``.
    ``detect_kwargs`` go to ``model.detect``. Detections of a class with no instance in the scored videos are left
    out (mAP averages over the ground truth's classes, so they cannot change it).
    """
    from tadlab.data.schema import detections_to_results
    from tadlab.eval import evaluate_detection

    items = list(world.dataset(subset))
    if not items:
        raise ValueError(f"world has no {subset!r} videos")
    detections = []
    for batch, outputs in _batches(model, items, resolve_device(device), batch_size):
        if transform is not None:
            outputs = transform(outputs, batch)
        detections += [{k: v.detach().cpu() for k, v in d.items()} for d in model.detect(outputs, **detect_kwargs)]
    ids = [item["video_id"] for item in items]
    database = world.ground_truth["database"]
    present = {annotation["label"] for v in ids for annotation in database[v]["annotations"]}
    known = torch.tensor([name in present for name in world.class_names])
    detections = [{k: v[known[d["labels"]]] for k, v in d.items()} for d in detections]
    results = detections_to_results(detections, ids, [float(item["duration"]) for item in items],
                                    world.num_snippets, world.class_names)
    metrics = evaluate_detection({"database": {v: database[v] for v in ids}}, results,
                                 tiou_thresholds=tiou_thresholds, subset=subset)
    return {"average_mAP": float(metrics.average_mAP), "mAP": [float(m) for m in metrics.mAP],
            "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds], "subset": subset}


def mask_quality(model, items, kernel_size: int = 7, device="auto", batch_size: int = 32,
                 border: str | None = None) -> dict:
    """Class map and mask quality of a GSMT-like ``model`` on the foreground snippets of ``items`` (video items).

    Returns floats: ``fg_accuracy`` (share of foreground snippets whose most probable class is their own),
    and with masks ``column_iou`` (mean IoU of each foreground snippet's column thresholded at 0.5 with its target
    mask), ``lambda_at_cap`` (share of those columns whose soft boundary band does not meet the target's,
    |Phi(G) n Phi(P)| <= eps, so that the bIoU loss's lambda = 1/(overlap + eps) is at least half its cap e^8) and
    ``lambda_median`` (median lambda over the columns). ``kernel_size``: k of the bands; ``border``: their border
    (``"geodesic"`` or ``"zero"``, see :func:`tadlab.losses.boundary_band`), None for the model's own
    ``mask_border`` (``"geodesic"`` for a model without one).
    """
    from tadlab.losses import GSMT_EPS, boundary_band

    border = getattr(model, "mask_border", "geodesic") if border is None else border
    correct, iou, overlap = [], [], []
    for batch, outputs in _batches(model, list(items), resolve_device(device), batch_size):
        targets = model.targets(batch)
        valid = targets["valid"]  # (B, T) foreground snippets
        correct.append((outputs["probs"].argmax(1) == targets["classes"])[valid])
        if "masks" in outputs:
            predicted = outputs["masks"].transpose(1, 2)[valid]  # (N, T): the column of each foreground snippet
            target = targets["masks"].to(predicted.dtype).transpose(1, 2)[valid]
            hard, truth = predicted >= 0.5, target > 0
            iou.append((hard & truth).sum(1) / (hard | truth).sum(1).clamp_min(1))
            overlap.append((boundary_band(predicted, kernel_size, border=border)
                            * boundary_band(target, kernel_size, border=border)).sum(1))
    if not correct:
        raise ValueError("items is empty")
    quality = {"fg_accuracy": float(torch.cat(correct).float().mean())}
    if iou:
        overlap = torch.cat(overlap)
        quality.update(column_iou=float(torch.cat(iou).mean()), lambda_at_cap=float((overlap <= GSMT_EPS).float().mean()),
                       lambda_median=float((1 / (overlap + GSMT_EPS)).median()))
    return quality


def duration_breakdown(detections, items, edges, top_factor: int = 10, unit: str = "seconds") -> dict:
    """How well each ground-truth instance is found, per length bin (DETAD's XS, S, M, L, XL).

    ``detections[i]`` (``segments`` (M, 2) snippet units, ``scores``, ``labels``) belong to video item ``items[i]``;
    instance lengths are in ``unit``, seconds (snippet length x duration / T) or snippets (what a network sees), and
    fall in the bins cut at ``edges`` (4 increasing values, e.g. :data:`DURATION_EDGES` in seconds). For each
    instance the video's ``top_factor`` x G best-scored detections are searched (G its number of instances, as GSMT
    Fig. 5 does) for the same class's best tIoU.
    Returns JSON-able lists, one entry per bin (None for an empty bin): ``bins``, ``count``, ``best_tiou`` (mean)
    and ``recall_0.5`` (share with best tIoU >= 0.5).
    """
    from tadlab.segments import segment_iou

    check_choice("unit", unit, {"seconds", "snippets"})
    edges = [float(e) for e in edges]
    if len(edges) != len(DURATION_BINS) - 1 or sorted(edges) != edges:
        raise ValueError(f"edges must be {len(DURATION_BINS) - 1} increasing lengths in {unit}, got {edges}")
    if len(detections) != len(items):
        raise ValueError(f"detections ({len(detections)}) and items ({len(items)}) must pair up")
    best, lengths = [], []
    for item, det in zip(items, detections):
        segments, labels = item["segments"], item["labels"]
        keep = det["scores"].argsort(descending=True)[:top_factor * len(labels)]
        if len(keep):
            tiou = segment_iou(segments, det["segments"][keep].to(segments.dtype))  # (G, kept)
            same = labels[:, None] == det["labels"][keep][None, :].to(labels.dtype)
            best += torch.where(same, tiou, torch.zeros_like(tiou)).amax(1).tolist()
        else:
            best += [0.0] * len(labels)
        per_snippet = float(item["duration"]) / item["features"].shape[-1] if unit == "seconds" else 1.0
        lengths += ((segments[:, 1] - segments[:, 0]) * per_snippet).tolist()
    which, best = np.digitize(lengths, edges), np.asarray(best)
    count = [int((which == b).sum()) for b in range(len(DURATION_BINS))]
    return {"bins": list(DURATION_BINS), "count": count,
            "best_tiou": [float(best[which == b].mean()) if n else None for b, n in enumerate(count)],
            "recall_0.5": [float((best[which == b] >= 0.5).mean()) if n else None for b, n in enumerate(count)]}
