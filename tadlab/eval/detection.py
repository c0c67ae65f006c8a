"""ActivityNet temporal action detection mAP: the official algorithm, exactly, and vectorised.

The official ActivityNet evaluation (``ANETdetection``) scores detections like this, and so does this module:

1. Ground truth: the videos of ``subset`` (default: "validation" when the file has several subsets, see
   :mod:`tadlab.eval.common`), times as written (never clipped to the duration, which the official code never
   reads). The classes are the labels found there; a class with ``npos`` instances contributes AP 0 when it has no
   predictions. mAP is the mean AP over those classes.
2. Predictions are *not* filtered by subset: one on a video the scored ground truth lacks is a false positive, and
   so is one of class c on a video without ground truth of class c. Predictions whose label the ground truth does
   not have stop the official code with a ``KeyError``; tadlab leaves them out and scores the rest, with one
   warning that counts them (and stops, naming the likely cause, when no label is known).
3. Per class, predictions are visited by decreasing score, ordered as ``np.argsort(scores)[::-1]`` over the
   class's predictions in their order in the results (ties therefore fall exactly as in the official code).
4. At each tIoU threshold a prediction looks at the ground truth of its video and class by decreasing tIoU
   (``np.argsort(tiou)[::-1]``): the first instance under the threshold ends the search (false positive), an
   instance already matched at that threshold is skipped, the first free one reaching it is a true positive.
5. AP is VOC-2011 interpolated: precision made monotone from the right, summed over the recall steps.

Zero-length segments (kept by the schema): two of them have tIoU 0/0 = nan wherever they lie, and nan is never
"under the threshold", so a zero-length prediction matches any free zero-length instance of its video and class.
That is the official behaviour, kept so that the numbers agree.

Vectorisation (same numbers, to the last bit for TP/FP): matching is independent per (class, video) group, so
groups are processed together, stepping over a prediction's rank within its group; each prediction's ground truth
order comes from one ``np.argsort(axis=1)`` per group size, which sorts each row as the 1-D call does.

Optional switches for variants found in common copies, off by default: ``drop_duplicate_gt`` keeps one of
identical (video, label, segment) instances; ``ignore_videos`` removes videos (ids or a local file, one id a line
or a JSON list) from ground truth and predictions, as the official "blocked videos" list does. Never any network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tadlab.data.tables import duplicate_rows
from tadlab.eval.common import (
    ANET_TIOU,
    DEFAULT_SUBSET,
    align_results,
    ground_truth_table,
    pair_tiou,
    parse_tiou,
    read_ignore_list,
    resolve_subset,
    results_table,
    select_ground_truth,
)
from tadlab.utils import warn_at_caller


@dataclass(frozen=True)
class DetectionMetrics:
    """Detection mAP at each tIoU threshold.

    tiou_thresholds (n,); mAP (n,) fractions in [0, 1]; average_mAP = mAP.mean(); ap (K, n) per class, rows in
    the order of class_names (sorted labels of the ground truth).
    """

    tiou_thresholds: np.ndarray
    mAP: np.ndarray
    average_mAP: float
    ap: np.ndarray
    class_names: tuple
    num_ground_truth: int = 0  # instances evaluated
    num_predictions: int = 0  # predictions evaluated (known labels, not ignored videos)
    num_ignored_predictions: int = 0  # predictions whose label the ground truth lacks
    subset: str | None = None  # the subset scored; None: every video of the ground truth

    def per_class(self) -> dict[str, list[float]]:
        """Class name -> AP at each threshold."""
        return {name: row.tolist() for name, row in zip(self.class_names, self.ap)}

    def to_dict(self, per_class: bool = False) -> dict:
        """A JSON-ready dict: ``mAP`` (list), ``average_mAP``, ``tiou_thresholds``, ``subset`` (the subset scored,
        None for every video) (+ ``per_class_ap``)."""
        out = {"mAP": self.mAP.tolist(), "average_mAP": float(self.average_mAP),
               "tiou_thresholds": self.tiou_thresholds.tolist(), "subset": self.subset}
        if per_class:
            out["per_class_ap"] = self.per_class()
        return out

    def table(self, per_class: bool = True) -> str:
        """A readable table of mAP (and per-class AP) in percent."""
        head = [f"{t:.2f}" for t in self.tiou_thresholds] + ["avg"]
        width = max(12, *(len(n) + 2 for n in self.class_names)) if per_class else 12

        def line(name, cells):
            return f"{name:<{width}}" + "".join(f"{cell:>8}" for cell in cells)

        def pct(row):
            return [f"{100 * v:.2f}" for v in row] + [f"{100 * np.mean(row):.2f}"]

        ignored = self.num_ignored_predictions
        lines = [
            f"ActivityNet detection mAP (%), {'subset ' + repr(self.subset) if self.subset else 'all subsets'}: "
            f"{len(self.class_names)} classes, "
            f"{self.num_ground_truth} ground-truth instances, {self.num_predictions} predictions"
            + (f" ({ignored} with unknown labels ignored)" if ignored else ""),
            line("tIoU", head),
            line("mAP", pct(self.mAP)),
        ]
        if per_class:
            lines += ["", "AP per class (%)", line("class", head)]
            lines += [line(name, pct(row)) for name, row in zip(self.class_names, self.ap)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table(per_class=False)


def interpolated_ap(precision, recall) -> np.ndarray:
    """VOC-2011 interpolated average precision (the ActivityNet one).

    precision, recall: (..., N) cumulative values at each prediction, by decreasing score. Precision is padded
    with 0 at both ends, recall with 0 in front and 1 at the end; precision is made non-increasing from the right,
    then AP = sum over points where recall changes of (recall step) * precision. Returns (...,).
    """
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    if precision.shape != recall.shape:
        raise ValueError(f"precision and recall must have the same shape, got {precision.shape} and {recall.shape}")
    zeros = np.zeros(precision.shape[:-1] + (1,))
    mprec = np.concatenate([zeros, precision, zeros], axis=-1)
    mrec = np.concatenate([zeros, recall, zeros + 1.0], axis=-1)
    mprec = np.flip(np.maximum.accumulate(np.flip(mprec, -1), axis=-1), -1)
    step = mrec[..., 1:] - mrec[..., :-1]
    return np.sum(np.where(mrec[..., 1:] != mrec[..., :-1], step * mprec[..., 1:], 0.0), axis=-1)


# ---------------------------------------------------------------- matching
def _greedy_steps(tiou_sorted, gt_sorted, rank, locked, thresholds):
    """Greedy matching of one bucket of predictions, stepping over the rank within their (class, video) group.

    tiou_sorted (R, W): each row's tIoU by decreasing order, padded with -inf (at least one pad per row);
    gt_sorted (R, W): the matching ground-truth indices (pads point at a dummy column); rank (R,);
    locked (T, num_gt + 1) bool, updated in place. Returns tp (T, R) bool.
    """
    thr = thresholds[:, None, None]
    tp = np.zeros((len(thresholds), len(rank)), dtype=bool)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(rank.max() + 2))
    for k in range(rank.max() + 1):
        rows = order[bounds[k]:bounds[k + 1]]  # one prediction per group: their ground truth is disjoint
        tiou, gt = tiou_sorted[rows], gt_sorted[rows]  # (A, W)
        below = tiou[None] < thr  # (T, A, W); nan is never below, as in the official comparison
        stop = below | ~locked[:, gt]  # the search ends at a tIoU under the threshold or at a free instance
        first = stop.argmax(axis=2)  # (T, A); the -inf pad guarantees a stop
        hit = ~np.take_along_axis(below, first[..., None], axis=2)[..., 0]
        t_idx, a_idx = np.nonzero(hit)
        locked[t_idx, gt[a_idx, first[t_idx, a_idx]]] = True
        tp[:, rows] = hit
    return tp


def _match(pred_segments, group, rank, gt_segments, gt_by_group, group_start, group_size, thresholds):
    """True positives (T, R) of predictions with a group (R,), by group size buckets.

    gt_by_group: ground-truth indices grouped by (class, video), file order inside a group; group_start/size
    index into it. Exact-size buckets for the argsort (so each row sorts only its own instances), then
    power-of-two widths for the stepping (few buckets, little padding).
    """
    num_gt = len(gt_segments)
    tp = np.zeros((len(thresholds), len(group)), dtype=bool)
    locked = np.zeros((len(thresholds), num_gt + 1), dtype=bool)
    size = group_size[group]
    width = 1 << np.ceil(np.log2(size + 1)).astype(np.int64)
    for w in np.unique(width):
        rows = np.flatnonzero(width == w)
        tiou_sorted = np.full((len(rows), w), -np.inf)
        gt_sorted = np.full((len(rows), w), num_gt)
        for n in np.unique(size[rows]):
            sub = np.flatnonzero(size[rows] == n)
            r = rows[sub]
            gt = gt_by_group[group_start[group[r]][:, None] + np.arange(n)]  # (len(r), n), file order
            tiou = pair_tiou(pred_segments[r][:, None], gt_segments[gt])
            order = np.argsort(tiou, axis=1)[:, ::-1]  # each row exactly as the official 1-D argsort()[::-1]
            tiou_sorted[sub, :n] = np.take_along_axis(tiou, order, axis=1)
            gt_sorted[sub, :n] = np.take_along_axis(gt, order, axis=1)
        tp[:, rows] = _greedy_steps(tiou_sorted, gt_sorted, rank[rows], locked, thresholds)
    return tp


# ---------------------------------------------------------------- evaluation
def evaluate_detection(ground_truth, results, tiou_thresholds=ANET_TIOU, subset: str | None = DEFAULT_SUBSET,
                       drop_duplicate_gt: bool = False, ignore_videos=None) -> DetectionMetrics:
    """ActivityNet detection mAP, exactly as the official evaluation computes it (see the module docstring).

    ground_truth: path, ActivityNet JSON dict or dict of VideoAnnotations; results: path, results dict or dict of
    VideoDetections (both read by :mod:`tadlab.data.tables`). tiou_thresholds: (n,) or a string for
    :func:`parse_tiou`. subset: "auto" (default: "validation" when the ground truth has several subsets, as the
    official code; else every video), None (every video) or a subset name; the result's ``subset`` says which.
    Returns :class:`DetectionMetrics` with mAP (n,) and ap (K, n).
    """
    thresholds = parse_tiou(tiou_thresholds)
    if not isinstance(drop_duplicate_gt, bool):
        raise TypeError(f"drop_duplicate_gt must be a bool, got {type(drop_duplicate_gt).__name__} "
                        f"{drop_duplicate_gt!r}")
    ignore = read_ignore_list(ignore_videos)
    truth = ground_truth_table(ground_truth)
    subset = resolve_subset(truth, subset)
    predictions = results_table(results, labels=True)

    selection = select_ground_truth(truth, subset, ignore)
    gt_video, gt_segments, gt_labels = selection.video, selection.segments, selection.labels
    if drop_duplicate_gt:  # keep the first of identical (video, label, start, end) instances
        keep = ~duplicate_rows(gt_video, gt_labels, gt_segments)
        gt_video, gt_segments = gt_video[keep], gt_segments[keep]
        gt_labels = [label for label, k in zip(gt_labels, keep.tolist()) if k]
    class_names = sorted(set(gt_labels))
    class_index = {name: i for i, name in enumerate(class_names)}
    gt_class = np.fromiter(map(class_index.__getitem__, gt_labels), np.int64, len(gt_labels))
    num_classes, num_videos = len(class_names), len(selection.video_ids)
    npos = np.bincount(gt_class, minlength=num_classes)

    rows, pred_video = align_results(predictions, selection, ignore, truth, "count as false positives")
    labels = predictions.labels
    code = {name: class_index.get(name, -1) for name in dict.fromkeys(labels)}  # few distinct labels
    pred_class = np.fromiter(map(code.__getitem__, labels), np.int64, len(labels))[rows]
    known = pred_class >= 0
    num_unknown = int((~known).sum())
    if num_unknown:
        _report_unknown_labels([labels[i] for i in rows[~known].tolist()], class_names, num_unknown == len(rows))
    rows, pred_video, pred_class = rows[known], pred_video[known], pred_class[known]
    pred_segments, scores = predictions.segments[rows], predictions.scores[rows]

    # Per class: file order, then the official argsort()[::-1] on that class's scores.
    by_class = np.argsort(pred_class, kind="stable")
    class_bounds = np.concatenate([[0], np.cumsum(np.bincount(pred_class, minlength=num_classes))])
    ranked = by_class.copy()
    for c in range(num_classes):
        members = by_class[class_bounds[c]:class_bounds[c + 1]]
        ranked[class_bounds[c]:class_bounds[c + 1]] = members[np.argsort(scores[members])[::-1]]
    pred_video, pred_class, pred_segments = pred_video[ranked], pred_class[ranked], pred_segments[ranked]

    # Groups = (class, video) pairs with ground truth; ground truth grouped, file order kept inside a group.
    gt_key = gt_class * num_videos + gt_video
    gt_by_group = np.argsort(gt_key, kind="stable")
    group_keys, group_start, group_size = np.unique(gt_key[gt_by_group], return_index=True, return_counts=True)
    pred_key = pred_class * num_videos + pred_video
    slot = np.minimum(np.searchsorted(group_keys, pred_key), len(group_keys) - 1)
    has_group = (pred_video >= 0) & (group_keys[slot] == pred_key)  # others are false positives everywhere

    # Rank of each prediction within its group (class order is score order, so a stable sort by group keeps it).
    matched = np.flatnonzero(has_group)
    group = slot[matched]
    by_group = np.argsort(group, kind="stable")
    rank = np.empty(len(group), dtype=np.int64)
    rank[by_group] = np.arange(len(group)) - np.searchsorted(group[by_group], group[by_group], side="left")

    tp = np.zeros((len(thresholds), len(ranked)), dtype=bool)
    if len(matched):
        tp[:, matched] = _match(pred_segments[matched], group, rank, gt_segments, gt_by_group, group_start,
                                group_size, thresholds)

    ap = np.zeros((num_classes, len(thresholds)))
    for c in range(num_classes):
        block = slice(class_bounds[c], class_bounds[c + 1])
        if block.start == block.stop:
            continue  # no predictions: AP 0
        tp_cum = np.cumsum(tp[:, block], axis=1, dtype=np.float64)
        fp_cum = np.cumsum(~tp[:, block], axis=1, dtype=np.float64)
        ap[c] = interpolated_ap(tp_cum / (tp_cum + fp_cum), tp_cum / npos[c])
    mean_ap = ap.mean(axis=0)
    return DetectionMetrics(thresholds, mean_ap, float(mean_ap.mean()), ap, tuple(class_names),
                            num_ground_truth=len(gt_class), num_predictions=len(ranked),
                            num_ignored_predictions=num_unknown, subset=subset)


def _report_unknown_labels(unknown: list, class_names: list, none_known: bool) -> None:
    """Warn (some labels unknown) or stop (none known) with the likely cause; the official code raises KeyError."""
    names = sorted(set(unknown))
    shown = ", ".join(repr(u) for u in names[:5]) + (", ..." if len(names) > 5 else "")
    lower = {name.lower() for name in class_names}
    if all(name.strip().lstrip("-").isdigit() for name in names[:100]):
        hint = "the results hold class indices where the ground truth has class names: write class_names[k]"
    elif any(name.lower() in lower for name in names[:100]):
        hint = "the labels differ from the ground truth's in upper and lower case"
    else:
        hint = f"the ground truth's classes are e.g. {class_names[:3]}"
    if none_known:
        raise ValueError(f"no prediction has a label of the ground truth ({len(names)} label(s): {shown}), so every "
                         f"AP would be 0; likely cause: {hint}")
    warn_at_caller(f"ignored {len(unknown)} prediction(s) whose label is not in the ground truth ({len(names)} "
                   f"label(s): {shown}; {hint}); the official evaluation stops with a KeyError on such a file, "
                   f"tadlab leaves them out and scores the others", UserWarning)
