"""ActivityNet temporal action detection mAP: the official algorithm, exactly, and vectorised.

The official ActivityNet evaluation (``ANETdetection``) scores detections like this, and so does this module:

1. Ground truth: the videos of ``subset`` (``None``: all videos). The classes are the labels found there; a class
   with ``npos`` instances contributes AP 0 when it has no predictions. mAP is the mean AP over those classes.
2. Predictions are *not* filtered by subset: one on a video the ground truth lacks is a false positive, and so is
   one of class c on a video without ground truth of class c. Predictions whose label the ground truth does not
   have are ignored (one warning counts them).
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

Command line::

    python -m tadlab.eval GROUND_TRUTH.json RESULTS.json [--subset S] [--tiou 0.5:0.95:0.05] [--json] [--per-class]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tadlab.data.schema import VideoDetections, as_ground_truth, load_results

# np.linspace, as the official code builds them: the exact float values matter when a tIoU equals a threshold.
ANET_TIOU = np.linspace(0.5, 0.95, 10)
THUMOS_TIOU = np.linspace(0.3, 0.7, 5)
ANET_TIOU.setflags(write=False)
THUMOS_TIOU.setflags(write=False)


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
    subset: str | None = None

    def per_class(self) -> dict[str, list[float]]:
        """Class name -> AP at each threshold."""
        return {name: row.tolist() for name, row in zip(self.class_names, self.ap)}

    def to_dict(self, per_class: bool = False) -> dict:
        """A JSON-ready dict: ``mAP`` (list), ``average_mAP``, ``tiou_thresholds`` (+ ``per_class_ap``)."""
        out = {"mAP": self.mAP.tolist(), "average_mAP": float(self.average_mAP),
               "tiou_thresholds": self.tiou_thresholds.tolist()}
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


def parse_tiou(spec) -> np.ndarray:
    """tIoU thresholds from ``"start:stop:step"`` (stop included, built with ``np.linspace`` as the official
    code does), ``"0.3,0.5,0.7"`` or ``"0.5"``; arrays and lists pass through after checking.

    Returns float64 (n,), each threshold in [0, 1].
    """
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                start, stop, step = (float(p) for p in text.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                count = round((stop - start) / step) + 1
                if abs(start + (count - 1) * step - stop) > 1e-9:
                    raise ValueError
                values = np.linspace(start, stop, count)
            else:
                values = np.array([float(p) for p in text.split(",")])
        except ValueError:
            raise ValueError(f"tiou must look like 'start:stop:step' (e.g. '0.5:0.95:0.05', stop reached by whole "
                             f"steps) or '0.3,0.5,0.7', got {spec!r}") from None
    else:
        try:
            values = np.array(spec, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(f"tiou_thresholds must be numbers or a string like '0.5:0.95:0.05', "
                            f"got {type(spec).__name__} {spec!r}") from None
    if values.size == 0 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"tiou_thresholds must be one or more numbers in [0, 1], got {values.tolist()}")
    return values


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


# ---------------------------------------------------------------- inputs
def _as_results(source) -> dict[str, VideoDetections]:
    if isinstance(source, Mapping) and source and all(isinstance(v, VideoDetections) for v in source.values()):
        return dict(source)  # e.g. what tadlab.data.schema.detections_to_results returns
    if not isinstance(source, (str, os.PathLike, Mapping)):
        raise TypeError(f"results must be a path, an ActivityNet results dict or a dict of VideoDetections, "
                        f"got {type(source).__name__}")
    return load_results(source)


def _read_ignore_list(ignore_videos) -> set[str]:
    """Video ids from an iterable, or from a local file: a JSON list, or one id per line."""
    if ignore_videos is None:
        return set()
    if isinstance(ignore_videos, (str, os.PathLike)):
        path = Path(ignore_videos)
        if not path.is_file():
            raise ValueError(f"ignore_videos: {str(path)!r} is not a file; give a local file (JSON list or one "
                             f"video id per line) or an iterable of video ids")
        text = path.read_text()
        try:
            ids = json.loads(text)
        except json.JSONDecodeError:
            ids = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(ids, list):
            raise TypeError(f"ignore_videos file {str(path)!r}: expected a JSON list of video ids or one id per "
                             f"line, got JSON {type(ids).__name__}")
    else:
        try:
            ids = list(ignore_videos)
        except TypeError:
            raise TypeError(f"ignore_videos must be an iterable of video ids or a file path, "
                            f"got {type(ignore_videos).__name__}") from None
    bad = [v for v in ids if not isinstance(v, str)]
    if bad:
        raise TypeError(f"ignore_videos must hold str video ids, got {type(bad[0]).__name__} {bad[0]!r}")
    return set(ids)


def _flatten_ground_truth(videos, subset, ignore, drop_duplicates):
    """Ground truth as flat arrays in file order: video index (N,), label (N,) str, segments (N, 2)."""
    video_index, vids, labels, segments = {}, [], [], []
    for video_id, video in videos.items():
        if (subset is not None and video.subset != subset) or video_id in ignore:
            continue
        video_index[video_id] = len(video_index)
        vids.append(np.full(len(video.labels), video_index[video_id]))
        labels.extend(video.labels)
        segments.append(video.segments)
    if not labels:
        subsets = sorted({v.subset for v in videos.values()})
        raise ValueError(f"ground_truth has no annotated instances in subset {subset!r}"
                         f"{' once ignore_videos are left out' if ignore else ''}; subsets present: {subsets}")
    vids, segments, labels = np.concatenate(vids), np.concatenate(segments), np.array(labels, dtype=object)
    if drop_duplicates:  # keep the first of identical (video, label, start, end) instances
        seen, keep = set(), []
        for key in zip(vids.tolist(), labels.tolist(), segments[:, 0].tolist(), segments[:, 1].tolist()):
            keep.append(key not in seen)
            seen.add(key)
        keep = np.array(keep)
        vids, labels, segments = vids[keep], labels[keep], segments[keep]
    return video_index, vids, labels, segments


def _flatten_results(results, video_index, class_index, ignore):
    """Predictions as flat arrays in file order (known labels only): video (M,) (-1: not in the ground truth),
    class (M,), segments (M, 2), scores (M,); and the number dropped for unknown labels."""
    kept = [(vid, r) for vid, r in results.items() if vid not in ignore]
    if not kept:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2)), np.zeros(0), 0, []
    vids = np.concatenate([np.full(len(r.labels), video_index.get(vid, -1)) for vid, r in kept])
    kept = [r for _, r in kept]
    labels = [label for r in kept for label in r.labels]
    classes = np.array([class_index.get(label, -1) for label in labels], dtype=np.int64)
    segments = np.concatenate([r.segments for r in kept]).reshape(-1, 2)
    scores = np.concatenate([r.scores for r in kept])
    known = classes >= 0
    unknown_labels = sorted({label for label, ok in zip(labels, known) if not ok})
    return vids[known], classes[known], segments[known], scores[known], int((~known).sum()), unknown_labels


# ---------------------------------------------------------------- matching
def _rows_tiou(pred, gt):
    """tIoU of pred (R, 2) with each row of gt (R, n, 2) -> (R, n); the official expression, term for term, so
    that values (and ties, and equality with a threshold) are bit-identical."""
    start = np.maximum(pred[:, None, 0], gt[..., 0])
    end = np.minimum(pred[:, None, 1], gt[..., 1])
    inter = (end - start).clip(0)
    union = (gt[..., 1] - gt[..., 0]) + (pred[:, None, 1] - pred[:, None, 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):  # two zero-length segments: 0/0 = nan, as officially
        return inter / union


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
            tiou = _rows_tiou(pred_segments[r], gt_segments[gt])
            order = np.argsort(tiou, axis=1)[:, ::-1]  # each row exactly as the official 1-D argsort()[::-1]
            tiou_sorted[sub, :n] = np.take_along_axis(tiou, order, axis=1)
            gt_sorted[sub, :n] = np.take_along_axis(gt, order, axis=1)
        tp[:, rows] = _greedy_steps(tiou_sorted, gt_sorted, rank[rows], locked, thresholds)
    return tp


# ---------------------------------------------------------------- evaluation
def evaluate_detection(ground_truth, results, tiou_thresholds=ANET_TIOU, subset: str | None = None,
                       drop_duplicate_gt: bool = False, ignore_videos=None) -> DetectionMetrics:
    """ActivityNet detection mAP, exactly as the official evaluation computes it (see the module docstring).

    ground_truth: path, ActivityNet JSON dict or dict of VideoAnnotations; results: path, results dict or dict of
    VideoDetections (both validated by :mod:`tadlab.data.schema`). tiou_thresholds: (n,) or a string for
    :func:`parse_tiou`. subset: keep only ground-truth videos of that subset (None: all).
    Returns :class:`DetectionMetrics` with mAP (n,) and ap (K, n).
    """
    thresholds = parse_tiou(tiou_thresholds)
    if subset is not None and not isinstance(subset, str):
        raise TypeError(f"subset must be a str or None, got {type(subset).__name__} {subset!r}")
    if not isinstance(drop_duplicate_gt, bool):
        raise TypeError(f"drop_duplicate_gt must be a bool, got {type(drop_duplicate_gt).__name__} "
                        f"{drop_duplicate_gt!r}")
    ignore = _read_ignore_list(ignore_videos)
    videos, detections = as_ground_truth(ground_truth), _as_results(results)

    video_index, gt_video, gt_labels, gt_segments = _flatten_ground_truth(videos, subset, ignore, drop_duplicate_gt)
    class_names = sorted(set(gt_labels.tolist()))
    class_index = {name: i for i, name in enumerate(class_names)}
    gt_class = np.array([class_index[label] for label in gt_labels], dtype=np.int64)
    num_classes, num_videos = len(class_names), len(video_index)
    npos = np.bincount(gt_class, minlength=num_classes)

    pred_video, pred_class, pred_segments, scores, num_unknown, unknown = _flatten_results(
        detections, video_index, class_index, ignore)
    if num_unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        warnings.warn(f"ignored {num_unknown} prediction(s) whose label is not in the ground truth "
                      f"({len(unknown)} label(s): {shown}), as the official evaluation does", UserWarning, stacklevel=2)

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


# ---------------------------------------------------------------- command line
def main(argv=None) -> int:
    """``python -m tadlab.eval GROUND_TRUTH.json RESULTS.json [--subset S] [--tiou ...] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m tadlab.eval",
                                     description="ActivityNet detection mAP, as the official evaluation computes it.")
    parser.add_argument("ground_truth", help="ActivityNet-style ground truth JSON ('database')")
    parser.add_argument("results", help="results JSON ('results' -> video id -> segment, label, score)")
    parser.add_argument("--subset", default=None, help="evaluate only ground-truth videos of this subset "
                                                       "(default: all videos)")
    parser.add_argument("--tiou", default="0.5:0.95:0.05",
                        help="thresholds 'start:stop:step' or 'a,b,c' (default ActivityNet 0.5:0.95:0.05; "
                             "THUMOS14: 0.3:0.7:0.1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (mAP, average_mAP, "
                        "tiou_thresholds; fractions in [0, 1]) instead of a table (percent)")
    parser.add_argument("--per-class", action="store_true", help="with --json: add 'per_class_ap'")
    parser.add_argument("--no-per-class", action="store_true", help="table: leave out the per-class AP")
    parser.add_argument("--drop-duplicate-gt", action="store_true", help="keep one of identical GT instances")
    parser.add_argument("--ignore-videos", default=None, metavar="FILE",
                        help="local file of video ids to leave out (JSON list or one id per line)")
    args = parser.parse_args(argv)
    for name in ("ground_truth", "results"):
        if not Path(getattr(args, name)).is_file():
            parser.error(f"{name}: no such file {getattr(args, name)!r}")
    try:
        metrics = evaluate_detection(args.ground_truth, args.results, parse_tiou(args.tiou), subset=args.subset,
                                     drop_duplicate_gt=args.drop_duplicate_gt, ignore_videos=args.ignore_videos)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    if args.json:
        print(json.dumps(metrics.to_dict(per_class=args.per_class)))
    else:
        print(metrics.table(per_class=not args.no_per_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
