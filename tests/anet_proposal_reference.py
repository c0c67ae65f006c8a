"""A plain, loop-based re-implementation of the official ActivityNet proposal evaluation (AR@AN): the test oracle.

Written from the algorithm's description (not copied), structured like the official ``ANETproposal``: read the
ground truth of one subset (videos with at least one instance), read every proposal of the file (no subset
filter: they all count in the ratio), then per video rank by score, keep a share of the proposals, and count per
threshold and per curve point the instances that some looked-at proposal reaches. Pure numpy + Python on the raw
JSON dicts, independent of tadlab; slow by design.
"""
from __future__ import annotations

import numpy as np

from anet_reference import segment_tiou


def reference_proposals(ground_truth_json, proposals_json, tiou_thresholds, max_avg=100, subset="validation",
                        ignore_videos=()):
    """Returns (recall (n, 100), average recall (100,), proposals per video (100,), area under the curve)."""
    ignore = set(ignore_videos)
    gt_by_video = {}  # video -> list of (start, end), in file order; only videos with instances
    for video, entry in ground_truth_json["database"].items():
        if subset is not None and entry["subset"] != subset:
            continue
        if video in ignore:
            continue
        for ann in entry["annotations"]:
            gt_by_video.setdefault(video, []).append((float(ann["segment"][0]), float(ann["segment"][1])))
    proposals_by_video, num_proposals = {}, 0
    for video, rows in proposals_json["results"].items():
        if video in ignore:
            continue
        for row in rows:
            proposals_by_video.setdefault(video, []).append((float(row["segment"][0]), float(row["segment"][1]),
                                                             row["score"]))
            num_proposals += 1
    videos = list(gt_by_video)
    if not max_avg:
        max_avg = float(num_proposals) / len(videos)
    ratio = max_avg * float(len(videos)) / num_proposals

    tiou_per_video, total = [], 0
    for video in videos:
        gt = np.array(gt_by_video[video]).reshape(-1, 2)
        rows = proposals_by_video.get(video, [])
        if not rows:  # as officially: a single column of zeros
            tiou_per_video.append(np.zeros((len(gt), 1)))
            continue
        scores = np.array([r[2] for r in rows], dtype=float)
        ordered = [rows[i] for i in np.argsort(scores)[::-1]]
        keep = min(int(len(ordered) * ratio), len(ordered))
        total += keep
        ordered = ordered[:keep]
        tiou = np.empty((len(gt), keep))
        for j, (start, end, _) in enumerate(ordered):
            tiou[:, j] = segment_tiou([start, end], gt)
        tiou_per_video.append(tiou)

    points = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    thresholds = np.asarray(tiou_thresholds, dtype=float)
    recall = np.empty((len(thresholds), len(points)))
    for t, threshold in enumerate(thresholds):
        found = np.zeros(len(points))
        positives = 0.0
        for tiou in tiou_per_video:
            positives += tiou.shape[0]
            for j, point in enumerate(points):
                look = min(int(tiou.shape[1] * point), tiou.shape[1])
                for row in tiou[:, :look]:
                    if any(value >= threshold for value in row):
                        found[j] += 1
        recall[t] = found / positives
    average = recall.mean(axis=0)
    per_video = points * (float(total) / len(videos))
    area = float(np.trapezoid(average, per_video)) if hasattr(np, "trapezoid") else float(np.trapz(average, per_video))
    return recall, average, per_video, area
