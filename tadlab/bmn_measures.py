"""Measurements of BMN's boundary-matching map (notebook 06): how far the D x T grid itself can reach, and BMN (with
or without RCL's RRM) measured with its own candidates or with every valid cell a candidate.

**The grid ceiling.** BMN proposes only the cells of its grid, [t, t + d + 1) in snippet units with d < D and the
end inside the video. An instance that starts or ends between snippet boundaries is matched by no cell exactly;
:func:`grid_ceiling` gives, for each instance, the best tIoU any valid cell reaches (and that cell), and
:func:`grid_ceiling_recall` the recall at each tIoU threshold of a detector that proposes exactly that best cell
for every instance, with their mean (the AR@100 of that oracle, as the ActivityNet evaluation computes it: with one
proposal per instance, fewer than 100 a video on average, every proposal is looked at, and another instance's cell
never beats an instance's own best).
No map and no boundary scores can do better at any number of proposals; what a map can still lose is the ranking.

**Every valid cell a candidate.** BMN scores only the cells that join a start and an end candidate (local peaks of
its boundary probabilities, or above half their maximum); ``candidates="all"`` scores every valid cell, so the map
alone, not the boundary candidates, decides what is proposed. :func:`bmn_predictions` runs a trained BMN and a
video classifier on a list of videos, with either candidate rule and either Soft-NMS, optionally with an oracle map
(the target tIoU in both channels) or oracle map and boundaries, and :func:`measure_bmn` turns them into AR@AN and
ActivityNet mAP on one subset of a synthetic world.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tadlab.data.collate import collate_videos
from tadlab.data.schema import detections_to_results
from tadlab.eval import ANET_TIOU, evaluate_detection, evaluate_proposals
from tadlab.eval.common import parse_tiou
from tadlab.models.bmn import BMN, proposal_cells
from tadlab.models.video_classifier import VideoClassifier, combine_proposals_with_classes
from tadlab.segments import segment_iou

ORACLES = (None, "map", "map+boundaries")
COVERAGE_EDGES = (0.2, 0.4, 0.6, 0.8)  # instance length / video length: five bins (notebook 06, section 8)


def _instances(video, index: int) -> torch.Tensor:
    """A video's instances (N, 2) from a tensor or a dataset item with ``segments``."""
    segments = video["segments"] if isinstance(video, Mapping) else video
    if not isinstance(segments, torch.Tensor) or segments.dim() != 2 or segments.shape[1] != 2:
        shape = tuple(segments.shape) if isinstance(segments, torch.Tensor) else type(segments).__name__
        raise ValueError(f"videos[{index}] must be an (N, 2) tensor of instances or an item with 'segments' (N, 2), "
                         f"got {shape}")
    return segments


def grid_cells(num_snippets: int, max_duration: int | None = None, device=None,
               dtype=torch.float64) -> torch.Tensor:
    """The valid cells of BMN's D x T grid as segments (P, 2) [t, t + d + 1) in snippet units (D = T by default),
    ordered as :func:`tadlab.models.bmn.proposal_cells`."""
    max_duration = num_snippets if max_duration is None else max_duration
    cells = proposal_cells(num_snippets, max_duration, device).to(dtype)  # rows (d, t)
    return torch.stack([cells[:, 1], cells[:, 1] + cells[:, 0] + 1], dim=1)


def grid_ceiling(segments: torch.Tensor, num_snippets: int, max_duration: int | None = None) -> tuple:
    """For each instance of one video, the best tIoU a valid grid cell reaches, and that cell.

    segments (N, 2) instances in snippet units -> (best tIoU (N,) float64, best cell (N, 2) [start, end) float64).
    When several cells tie, the one returned is one of them. The grid is that of a BMN with ``num_snippets`` T and
    ``max_duration`` D (default T).
    """
    segments = _instances(segments, 0)
    cells = grid_cells(num_snippets, max_duration, segments.device)
    if segments.shape[0] == 0:
        return segments.new_zeros(0, dtype=torch.float64), cells.new_zeros(0, 2)
    best, where = segment_iou(segments.to(torch.float64), cells).max(dim=1)
    return best, cells[where]


def grid_ceiling_recall(videos: Sequence, num_snippets: int, max_duration: int | None = None,
                        tiou_thresholds=ANET_TIOU) -> dict:
    """Recall of the best grid cell per instance, at each tIoU threshold, over every instance of ``videos``.

    videos: (N, 2) tensors of instances in snippet units, or dataset items with ``segments`` (a world's
    ``dataset(subset)``). Returns ``{"tiou_thresholds", "recall"}`` (lists, one value per threshold: the share of
    instances whose best cell reaches it), ``"AR@100"`` (their mean: the average recall of a detector proposing
    exactly the best cell of each instance, see the module docstring), ``"num_instances"`` and ``"best_iou"``
    (float64 tensor, one entry per instance, in video order).
    """
    thresholds = parse_tiou(tiou_thresholds)
    best = [grid_ceiling(_instances(video, i), num_snippets, max_duration)[0].cpu() for i, video in enumerate(videos)]
    best = torch.cat(best) if best else torch.zeros(0, dtype=torch.float64)
    if best.numel() == 0:
        raise ValueError("videos hold no instance; the grid ceiling needs at least one")
    recall = (best.numpy()[:, None] >= thresholds[None, :]).mean(axis=0)
    return {"tiou_thresholds": thresholds.tolist(), "recall": recall.tolist(), "AR@100": float(recall.mean()),
            "num_instances": int(best.numel()), "best_iou": best}


def grid_ceiling_proposals(videos: Sequence, num_snippets: int, max_duration: int | None = None) -> list[dict]:
    """The oracle of :func:`grid_ceiling_recall` as proposals: per video the best cell of each instance, score 1,
    label 0, in the format of ``BMN.detect`` (for :func:`tadlab.data.schema.detections_to_results`)."""
    proposals = []
    for i, video in enumerate(videos):
        _, cells = grid_ceiling(_instances(video, i), num_snippets, max_duration)
        proposals.append({"segments": cells, "scores": torch.ones(len(cells), dtype=torch.float64),
                          "labels": torch.zeros(len(cells), dtype=torch.int64)})
    return proposals


def recall_by_coverage(proposals: Sequence[Mapping], items: Sequence[Mapping], num_snippets: int,
                       edges=COVERAGE_EDGES, tiou_thresholds=ANET_TIOU, top: int = 100) -> tuple[list, list]:
    """AR@``top`` of the instances in each coverage bin (instance length / video length, bins split at ``edges``):
    per instance the share of ``tiou_thresholds`` its best top-``top`` proposal reaches, averaged over the bin's
    instances (None for an empty bin). Returns ``(recall per bin, instances per bin)``; with at most ``top``
    proposals a video their count-weighted mean is the official AR@``top``."""
    thresholds = parse_tiou(tiou_thresholds)
    best, coverage = [], []
    for item, p in zip(items, proposals):
        segments = item["segments"]
        tiou = segment_iou(segments, p["segments"][:top].to(segments.dtype))
        best.append(tiou.amax(1) if tiou.shape[1] else torch.zeros(len(tiou), dtype=segments.dtype))
        coverage.append((segments[:, 1] - segments[:, 0]) / num_snippets)
    found = (torch.cat(best).numpy()[:, None] >= thresholds[None]).mean(1)
    bins = np.digitize(torch.cat(coverage).numpy(), list(edges))
    recall = [float(found[bins == b].mean()) if (bins == b).any() else None for b in range(len(edges) + 1)]
    return recall, np.bincount(bins, minlength=len(edges) + 1).tolist()


@torch.no_grad()
def bmn_predictions(model: BMN, classifier: VideoClassifier, items: Sequence[Mapping], *,
                    iterations: int | None = None, oracle: str | None = None, batch_size: int = 32,
                    **detect_kwargs) -> dict:
    """A trained BMN's proposals and, with the classifier's video classes, its detections on ``items``.

    model: :class:`~tadlab.models.bmn.BMN` (with or without an RRM; ``iterations`` its test-time iterations, only
    with one); classifier: :class:`~tadlab.models.video_classifier.VideoClassifier`; items: dataset items of one T.
    ``oracle``: None (BMN's own outputs), ``"map"`` (the target tIoU in both map channels) or ``"map+boundaries"``
    (also the target start and end probabilities). ``detect_kwargs`` go to ``BMN.detect`` (``candidates="all"``:
    every valid cell a candidate; ``nms``, ``sigma``, ``nms_thresholds``, ``fusion``, ``top_k``).

    Runs on the model's device, ``batch_size`` videos at a time. Returns ``{"proposals", "detections"}`` (lists of
    per-video dicts on the CPU; detections: each proposal with the video's top class, score multiplied) and
    ``"confidence"`` (V, 2, D, T), ``"iou"`` (V, D, T) the maps measured and their targets (CPU).
    """
    if not isinstance(model, BMN):
        raise TypeError(f"model must be a BMN, got {type(model).__name__}")
    if not isinstance(classifier, VideoClassifier):
        raise TypeError(f"classifier must be a VideoClassifier, got {type(classifier).__name__}")
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be None, 'map' or 'map+boundaries', got {oracle!r}")
    if iterations is not None and model.refine is None:
        raise ValueError(f"iterations={iterations!r} needs a BMN with an RRM (refine); this one has none")
    items = list(items)
    if not items:
        raise ValueError("items is empty; bmn_predictions needs at least one video")
    device = next(model.parameters()).device
    model.eval(), classifier.eval()
    out = {"proposals": [], "detections": [], "confidence": [], "iou": []}
    for first in range(0, len(items), batch_size):
        batch = collate_videos(items[first:first + batch_size])
        batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        outputs = model(batch["features"], **({} if iterations is None else {"iterations": iterations}))
        targets = model.targets(batch)
        if oracle is not None:
            outputs = {**outputs, "confidence": targets["iou"][:, None].expand(-1, 2, -1, -1)}
            if oracle == "map+boundaries":
                outputs["start"], outputs["end"] = targets["start"], targets["end"]
        proposals = [{key: value.cpu() for key, value in p.items()} for p in model.detect(outputs, **detect_kwargs)]
        out["proposals"] += proposals
        out["detections"] += combine_proposals_with_classes(proposals, classifier(batch["features"])["probs"].cpu())
        out["confidence"].append(outputs["confidence"].cpu())
        out["iou"].append(targets["iou"].cpu())
    out["confidence"], out["iou"] = torch.cat(out["confidence"]), torch.cat(out["iou"])
    return out


def measure_bmn(model: BMN, classifier: VideoClassifier, world, subset: str = "testing", *,
                tiou_thresholds=ANET_TIOU, coverage_edges=None, **prediction_kwargs) -> dict:
    """AR@AN and ActivityNet mAP of a trained BMN (and video classifier) on one subset of a synthetic ``world``.

    ``prediction_kwargs`` go to :func:`bmn_predictions` (``iterations``, ``oracle``, ``candidates``, ``nms``, ...).
    Proposals are scored with :func:`tadlab.eval.evaluate_proposals` (class-agnostic), detections with
    :func:`tadlab.eval.evaluate_detection` at ``tiou_thresholds``; detections of classes that have no instance in
    the subset are left out first, as :func:`tadlab.train.evaluate` does, so ``average_mAP`` equals
    :func:`tadlab.experiments.detection_metrics` of ``ProposalDetector(model, classifier)`` with the same options.

    Returns ``AR@1``, ``AR@10``, ``AR@100``, ``AUC``, ``average_mAP``, ``mAP`` (per threshold), ``map_error`` (mean
    squared error of the regression channel against the target tIoU over the valid cells) and ``subset``; with
    ``coverage_edges`` also ``recall_by_coverage`` and ``coverage_counts`` (:func:`recall_by_coverage`).
    """
    items = list(world.dataset(subset))
    predicted = bmn_predictions(model, classifier, items, **prediction_kwargs)
    present = torch.zeros(world.num_classes, dtype=torch.bool)
    present[torch.cat([item["labels"] for item in items])] = True
    detections = [{key: value[present[d["labels"]]] for key, value in d.items()} for d in predicted["detections"]]
    ids, durations = [item["video_id"] for item in items], [float(item["duration"]) for item in items]
    num_snippets = model.num_snippets
    ar = evaluate_proposals(world.ground_truth, detections_to_results(predicted["proposals"], ids, durations,
                                                                      num_snippets, ["action"]), subset=subset)
    mAP = evaluate_detection(world.ground_truth, detections_to_results(detections, ids, durations, num_snippets,
                                                                       world.class_names),
                             tiou_thresholds, subset=subset)
    valid = model.valid.cpu().expand_as(predicted["iou"])
    error = ((predicted["confidence"][:, 0] - predicted["iou"])[valid] ** 2).mean()
    row = {"AR@1": ar.ar_at(1), "AR@10": ar.ar_at(10), "AR@100": ar.ar_at(100), "AUC": float(ar.auc),
           "average_mAP": float(mAP.average_mAP), "mAP": [float(m) for m in np.asarray(mAP.mAP)],
           "map_error": float(error), "subset": subset}
    if coverage_edges is not None:
        row["recall_by_coverage"], row["coverage_counts"] = recall_by_coverage(
            predicted["proposals"], items, num_snippets, coverage_edges)
    return row
