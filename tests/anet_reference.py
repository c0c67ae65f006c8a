"""A plain, loop-based re-implementation of the official ActivityNet detection evaluation: the test oracle.

Written from the algorithm's description (not copied), structured like the official ``ANETdetection``:
read ground truth of one subset, build the class index from its labels, read every prediction (no subset filter),
then per class ``average_precision_detection`` with a Python loop over predictions, thresholds and ground truth.
Pure numpy + Python on the raw JSON dicts, independent of ``tadlab.data.schema``; slow by design.
"""
from __future__ import annotations

import numpy as np


def segment_tiou(target, candidates):
    """tIoU of one segment (2,) with candidates (n, 2) -> (n,), the official expression."""
    target = np.asarray(target, dtype=float)
    candidates = np.asarray(candidates, dtype=float).reshape(-1, 2)
    start = np.maximum(target[0], candidates[:, 0])
    end = np.minimum(target[1], candidates[:, 1])
    inter = (end - start).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter.astype(float) / union


def interpolated_precision_recall(precision, recall):
    """VOC-2011 AP of 1-D precision and recall, loop form."""
    mprec = np.hstack([[0.0], precision, [0.0]])
    mrec = np.hstack([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    changes = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mprec[changes]))


def average_precision_detection(ground_truth, predictions, tiou_thresholds):
    """ground_truth: list of (video, start, end) of one class (file order); predictions: list of
    (video, start, end, score) of that class (file order). Returns AP per threshold (n,)."""
    thresholds = np.asarray(tiou_thresholds, dtype=float)
    ap = np.zeros(len(thresholds))
    if not predictions:
        return ap
    npos = float(len(ground_truth))
    lock = -np.ones((len(thresholds), len(ground_truth)))
    scores = np.array([p[3] for p in predictions], dtype=float)
    predictions = [predictions[i] for i in np.argsort(scores)[::-1]]
    tp = np.zeros((len(thresholds), len(predictions)))
    fp = np.zeros((len(thresholds), len(predictions)))
    gt_rows_of_video = {}
    for row, (video, _, _) in enumerate(ground_truth):
        gt_rows_of_video.setdefault(video, []).append(row)
    for idx, (video, start, end, _) in enumerate(predictions):
        if video not in gt_rows_of_video:
            fp[:, idx] = 1
            continue
        rows = gt_rows_of_video[video]
        tiou = segment_tiou([start, end], [ground_truth[r][1:] for r in rows])
        visit = tiou.argsort()[::-1]
        for t, threshold in enumerate(thresholds):
            for j in visit:
                if tiou[j] < threshold:
                    fp[t, idx] = 1
                    break
                if lock[t, rows[j]] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, rows[j]] = idx
                break
            if tp[t, idx] == 0 and fp[t, idx] == 0:
                fp[t, idx] = 1
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(fp, axis=1)
    recall = tp_cum / npos
    precision = tp_cum / (tp_cum + fp_cum)
    for t in range(len(thresholds)):
        ap[t] = interpolated_precision_recall(precision[t], recall[t])
    return ap


def reference_evaluate(ground_truth_json, results_json, tiou_thresholds, subset=None, drop_duplicate_gt=False,
                       ignore_videos=()):
    """Returns (class -> AP (n,), mAP (n,), number of predictions with unknown labels)."""
    ignore = set(ignore_videos)
    class_index, gt_rows, seen = {}, [], set()
    for video, entry in ground_truth_json["database"].items():
        if subset is not None and entry["subset"] != subset:
            continue
        if video in ignore:
            continue
        for ann in entry["annotations"]:
            start, end = float(ann["segment"][0]), float(ann["segment"][1])
            key = (video, ann["label"], start, end)
            if drop_duplicate_gt and key in seen:
                continue
            seen.add(key)
            class_index.setdefault(ann["label"], len(class_index))
            gt_rows.append(key)
    pred_rows, unknown = [], 0
    for video, detections in results_json["results"].items():
        if video in ignore:
            continue
        for det in detections:
            if det["label"] not in class_index:
                unknown += 1
                continue
            pred_rows.append((video, det["label"], float(det["segment"][0]), float(det["segment"][1]),
                              float(det["score"])))
    if not class_index:
        return {}, None, unknown
    ap = {}
    for label in class_index:
        gt = [(v, s, e) for v, lab, s, e in gt_rows if lab == label]
        preds = [(v, s, e, score) for v, lab, s, e, score in pred_rows if lab == label]
        ap[label] = average_precision_detection(gt, preds, tiou_thresholds)
    mean_ap = np.mean([ap[label] for label in class_index], axis=0)
    return ap, mean_ap, unknown
