"""ActivityNet proposal evaluation: average recall vs average number of proposals per video (AR@AN), exactly.

The official ActivityNet proposal evaluation (``ANETproposal``) computes the curve like this, and so does this
module, its quirks included:

1. The videos are those with at least one ground-truth instance in ``subset`` (default as for detection: the
   official "validation" when the file has several subsets); V of them, N instances. Labels play no part.
2. ``max_proposals`` (default 100, the official command's) is the average number of proposals per video at the
   curve's end; None takes the file's own average, P / V. P counts *every* proposal in the file, on any video
   (also videos of other subsets or none), and gives ``ratio = max_proposals * V / P``.
3. Each of the V videos keeps its top ``min(int(n * ratio), n)`` proposals of its n, ranked by
   ``np.argsort(scores)[::-1]`` (ties fall as in the official code); their sum is ``total``. A video without
   proposals keeps nothing, but is scored as one row of tIoU 0 (so it counts as found at a threshold of 0).
4. The curve has 100 points: ``pcn = arange(1, 101) / 100 * (max_proposals * V / total)``; at point j a video with
   k kept proposals looks at its first ``min(int(k * pcn[j]), k)``. An instance is found at threshold t when one of
   them has tIoU >= t (a nan tIoU, two zero-length segments, is never >= t). recall[t, j] = found / N;
   average_recall = recall.mean over thresholds; proposals_per_video = ``pcn * total / V``.
5. The area under the curve is ``np.trapezoid(average_recall, proposals_per_video)``; the official command prints
   it divided by ``proposals_per_video[-1]``, in percent. ``AUC`` here is that quotient as a fraction in [0, 1].

``AR@n`` is the average recall at the curve point of n proposals per video: point ``n * 100 / max_proposals - 1``
(AR@1, @5, @10, @100 are points 0, 4, 9, 99 at the default 100, as BMN and the papers after it report them); None
when n is not one of the curve's points.

Vectorised: the ranking runs one ``np.argsort(axis=1)`` per number of proposals (each row sorts as the 1-D call
does); every (instance, kept proposal) pair of a video gets its tIoU at once, and the rank of the first proposal
reaching each threshold decides, for every curve point together, whether the instance is found.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

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

CURVE_POINTS = 100
REPORTED_AR = (1, 5, 10, 100)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 renamed trapz


@dataclass(frozen=True)
class ProposalMetrics:
    """The AR@AN curve of a proposal file.

    tiou_thresholds (n,); recall (n, 100) at each threshold and curve point; average_recall (100,) =
    recall.mean(0); proposals_per_video (100,) the curve's x; auc: area under the curve divided by its last x
    (a fraction in [0, 1]); max_proposals: the average number of proposals per video the curve ends at.
    """

    tiou_thresholds: np.ndarray
    recall: np.ndarray
    average_recall: np.ndarray
    proposals_per_video: np.ndarray
    auc: float
    max_proposals: float
    num_videos: int = 0  # videos with ground truth in the subset
    num_ground_truth: int = 0
    num_proposals: int = 0  # every proposal of the file (ignored videos left out)
    subset: str | None = None  # the subset scored; None: every video of the ground truth

    def ar_at(self, proposals: int) -> float | None:
        """Average recall at ``proposals`` per video, when that is one of the curve's points, else None."""
        point = proposals * CURVE_POINTS / self.max_proposals
        if point != round(point) or not 1 <= point <= CURVE_POINTS:
            return None
        return float(self.average_recall[round(point) - 1])

    def to_dict(self) -> dict:
        """JSON-ready: ``AR@1``, ``AR@5``, ``AR@10``, ``AR@100`` (None off the curve), ``AUC``, ``average_recall``,
        ``proposals_per_video``, ``tiou_thresholds``, ``max_proposals`` and ``subset``; fractions in [0, 1]."""
        out = {f"AR@{n}": self.ar_at(n) for n in REPORTED_AR}
        out.update({"AUC": float(self.auc), "average_recall": self.average_recall.tolist(),
                    "proposals_per_video": self.proposals_per_video.tolist(),
                    "tiou_thresholds": self.tiou_thresholds.tolist(), "max_proposals": float(self.max_proposals),
                    "subset": self.subset})
        return out

    def table(self) -> str:
        """AR@n and AUC in percent, with what was scored."""
        cells = [(f"AR@{n}", self.ar_at(n)) for n in REPORTED_AR] + [("AUC", self.auc)]
        cells = [(name, value) for name, value in cells if value is not None]
        return "\n".join([
            f"ActivityNet proposals AR@AN (%), {'subset ' + repr(self.subset) if self.subset else 'all subsets'}: "
            f"{self.num_videos} videos, {self.num_ground_truth} ground-truth instances, {self.num_proposals} "
            f"proposals; curve to {self.max_proposals:g} per video, tIoU "
            f"{self.tiou_thresholds[0]:.2f}:{self.tiou_thresholds[-1]:.2f} ({len(self.tiou_thresholds)})",
            "".join(f"{name:>10}" for name, _ in cells),
            "".join(f"{100 * value:>10.2f}" for _, value in cells),
        ])

    def __str__(self) -> str:
        return self.table()


def evaluate_proposals(ground_truth, proposals, max_proposals: float | None = 100, tiou_thresholds=ANET_TIOU,
                       subset: str | None = DEFAULT_SUBSET, ignore_videos=None) -> ProposalMetrics:
    """AR@AN of ``proposals`` exactly as the official ActivityNet proposal evaluation (see the module docstring).

    ground_truth: path, ActivityNet JSON dict or dict of VideoAnnotations; proposals: path, results dict (``label``
    optional, ignored) or dict of VideoDetections. max_proposals: average proposals per video at the curve's end
    (None: the file's average). subset and ignore_videos as for :func:`~tadlab.eval.evaluate_detection`.
    """
    thresholds = parse_tiou(tiou_thresholds)
    if max_proposals is not None and (isinstance(max_proposals, bool) or not isinstance(max_proposals, numbers.Real)
                                      or not np.isfinite(max_proposals) or max_proposals <= 0):
        raise ValueError(f"max_proposals must be a positive number (average proposals per video) or None, "
                         f"got {max_proposals!r}")
    ignore = read_ignore_list(ignore_videos)
    truth = ground_truth_table(ground_truth)
    subset = resolve_subset(truth, subset)
    table = results_table(proposals, labels=False, name="proposals")
    selection = select_ground_truth(truth, subset, ignore)
    rows, video = align_results(table, selection, ignore, truth, "are never matched but count in the number of "
                                                                 "proposals per video")
    num_proposals = len(rows)
    if num_proposals == 0:
        raise ValueError("proposals: the file holds no proposal (outside ignore_videos); the curve needs at least one")

    # The scored videos are those with instances; a video's instances are contiguous in the selection.
    scored, gt_video = np.unique(selection.video, return_inverse=True)  # (V,), (N,) in 0..V-1
    num_videos, num_gt = len(scored), len(gt_video)
    slot = np.full(len(selection.video_ids), -1)
    slot[scored] = np.arange(num_videos)
    video = np.where(video >= 0, slot[np.maximum(video, 0)], -1)
    limit = float(max_proposals) if max_proposals else num_proposals / num_videos
    ratio = limit * float(num_videos) / num_proposals

    # Proposals of each scored video, file order (a video's rows are contiguous), ranked by score.
    order = np.argsort(video, kind="stable")
    order = order[video[order] >= 0]
    count = np.bincount(video[order], minlength=num_videos)  # n per video
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    kept = np.minimum((count * ratio).astype(np.int64), count)  # int() of a positive float truncates, as astype
    total = int(kept.sum())
    if total == 0:
        raise ValueError(f"proposals: no proposal is kept on the {num_videos} ground-truth video(s) (ratio "
                         f"{ratio:.3g} of each video's proposals with max_proposals={max_proposals!r}); raise "
                         f"max_proposals")
    ranked = _rank(table.scores[rows[order]], count, start)  # (sum n,) positions into order, best first per video
    width = np.where(count > 0, kept, 1)  # a video without proposals: one column of tIoU 0

    # Pairs (instance, kept proposal) of the same video: instance-major, proposal rank-minor.
    pairs_per_gt = np.where(count > 0, kept, 0)[gt_video]
    pair_gt = np.repeat(np.arange(num_gt), pairs_per_gt)
    gt_first = np.concatenate([[0], np.cumsum(pairs_per_gt)[:-1]])
    pair_rank = np.arange(len(pair_gt)) - gt_first[pair_gt]
    pair_proposal = rows[order[ranked[start[gt_video[pair_gt]] + pair_rank]]]
    tiou = pair_tiou(table.segments[pair_proposal], selection.segments[pair_gt])
    with_pairs = pairs_per_gt > 0

    pcn = np.arange(1, CURVE_POINTS + 1) / 100.0 * (limit * float(num_videos) / total)
    looked_at = np.minimum((width[:, None] * pcn).astype(np.int64), width[:, None])[gt_video]  # (N, 100)
    no_hit = np.iinfo(np.int64).max
    recall = np.empty((len(thresholds), CURVE_POINTS))
    for t, threshold in enumerate(thresholds):
        first = np.full(num_gt, no_hit)  # rank of the first kept proposal with tIoU >= threshold
        if with_pairs.any():
            candidate = np.where(tiou >= threshold, pair_rank, no_hit)
            first[with_pairs] = np.minimum.reduceat(candidate, gt_first[with_pairs])
        first[(count[gt_video] == 0) & (0.0 >= threshold)] = 0  # the tIoU-0 column of a video without proposals
        recall[t] = (first[:, None] < looked_at).sum(axis=0) / float(num_gt)
    average_recall = recall.mean(axis=0)
    proposals_per_video = pcn * (float(total) / num_videos)
    area = float(_trapezoid(average_recall, proposals_per_video))
    return ProposalMetrics(thresholds, recall, average_recall, proposals_per_video, area / proposals_per_video[-1],
                           limit, num_videos=num_videos, num_ground_truth=num_gt, num_proposals=num_proposals,
                           subset=subset)


def _rank(scores: np.ndarray, count: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per video (rows start[v] : start[v] + count[v] of ``scores``), positions ordered as the official
    ``np.argsort(scores)[::-1]``; rows of equal length are sorted together, which orders each as the 1-D call."""
    ranked = np.empty(len(scores), dtype=np.int64)
    for n in np.unique(count[count > 0]).tolist():
        first = start[count == n]
        index = first[:, None] + np.arange(n)  # (videos, n)
        order = np.argsort(scores[index], axis=1)[:, ::-1]
        ranked[index] = np.take_along_axis(index, order, axis=1)
    return ranked
