"""What a TAD dataset looks like: the statistics that make real benchmarks hard, for any ground truth.

:func:`dataset_statistics` computes them for ActivityNet-style ground truth (a synthetic world's or a real file's),
so the synthetic presets can be put side by side with THUMOS14 and ActivityNet-1.3 (notebook 01). Times are the
annotations' own, in seconds; nothing is clipped.

Rows (one key each in the returned dict):

- ``videos``, ``instances``, ``mean_duration`` (s)
- ``single_class_videos``: share of annotated videos whose instances all have one label
- ``same_class_consecutive``: share of consecutive instance pairs (by start time, within a video) of one label
- ``gap_median`` (s), ``gap_under_1s``, ``gap_under_3s``, ``gap_median_fraction``: gaps between consecutive
  instances of the same class in a video (start of the next minus end of the previous; overlapping pairs, whose
  gap is negative, are counted under ``overlapping_instances`` instead), as seconds and as a fraction of the video
- ``instances_per_video_mean`` / ``_median`` / ``_max`` and ``instances_per_video_share``: the share of videos
  with 1, 2, 3-4, 5-8 and more than 8 instances (annotated videos only)
- ``length_fraction_mean`` / ``_median``, ``length_under_2pct``, ``length_over_80pct``: instance length over
  video duration
- ``action_fraction``: mean over videos of the share of the video covered by at least one instance
- ``overlapping_instances``: share of instances that overlap another instance of their video (positive
  intersection); ``overlapping_same_class``: the share of those overlaps that are with the same class
"""
from __future__ import annotations

import numpy as np

from tadlab.data.schema import as_ground_truth

COUNT_BUCKETS = (("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), (">8", 9, None))


def dataset_statistics(ground_truth, subset: str | None = None) -> dict:
    """The statistics of the module docstring for ``ground_truth`` (ActivityNet JSON dict, path, or loaded dict
    of :class:`~tadlab.data.schema.VideoAnnotations`), restricted to ``subset`` when given.

    Videos without annotations count in ``videos`` and ``mean_duration`` only. Raises ``ValueError`` when no
    video of the subset has an annotation.
    """
    videos = as_ground_truth(ground_truth)
    if subset is not None:
        videos = {k: v for k, v in videos.items() if v.subset == subset}
    annotated = [v for v in videos.values() if len(v.labels)]
    if not annotated:
        known = sorted({v.subset for v in as_ground_truth(ground_truth).values()})
        raise ValueError(f"no annotated video in subset {subset!r}; the ground truth's subsets are {known}")

    counts = np.array([len(v.labels) for v in annotated])
    single_class = np.mean([len(set(v.labels)) == 1 for v in annotated])
    same_pairs, all_pairs, gaps, gap_fractions, lengths = 0, 0, [], [], []
    overlapping, overlapping_same, coverage = 0, 0, []
    for video in annotated:
        segments, labels = video.segments, np.asarray(video.labels)
        order = np.lexsort((segments[:, 1], segments[:, 0]))
        segments, labels = segments[order], labels[order]
        same_pairs += int((labels[1:] == labels[:-1]).sum())
        all_pairs += len(labels) - 1
        for label in np.unique(labels):
            own = segments[labels == label]
            gap = own[1:, 0] - np.maximum.accumulate(own[:, 1])[:-1]
            gap = gap[gap >= 0]
            gaps.extend(gap.tolist())
            gap_fractions.extend((gap / video.duration).tolist())
        lengths.extend(((segments[:, 1] - segments[:, 0]) / video.duration).tolist())
        inter = (np.minimum(segments[:, None, 1], segments[None, :, 1])
                 - np.maximum(segments[:, None, 0], segments[None, :, 0]))
        np.fill_diagonal(inter, 0.0)
        overlaps = inter > 0
        overlapping += int(overlaps.any(1).sum())
        overlapping_same += int((overlaps & (labels[:, None] == labels[None, :])).any(1).sum())
        coverage.append(_union_length(segments) / video.duration)

    gaps, gap_fractions, lengths = np.array(gaps), np.array(gap_fractions), np.array(lengths)
    instances = int(counts.sum())
    share = {name: float(np.mean((counts >= low) & (counts <= (high if high is not None else np.inf))))
             for name, low, high in COUNT_BUCKETS}
    nan = float("nan")
    return {
        "videos": len(videos), "instances": instances,
        "mean_duration": float(np.mean([v.duration for v in videos.values()])),
        "single_class_videos": float(single_class),
        "same_class_consecutive": float(same_pairs / all_pairs) if all_pairs else nan,
        "gap_median": float(np.median(gaps)) if len(gaps) else nan,
        "gap_under_1s": float(np.mean(gaps < 1.0)) if len(gaps) else nan,
        "gap_under_3s": float(np.mean(gaps < 3.0)) if len(gaps) else nan,
        "gap_median_fraction": float(np.median(gap_fractions)) if len(gaps) else nan,
        "instances_per_video_mean": float(counts.mean()),
        "instances_per_video_median": float(np.median(counts)),
        "instances_per_video_max": int(counts.max()),
        "instances_per_video_share": share,
        "length_fraction_mean": float(lengths.mean()),
        "length_fraction_median": float(np.median(lengths)),
        "length_under_2pct": float(np.mean(lengths < 0.02)),
        "length_over_80pct": float(np.mean(lengths > 0.8)),
        "action_fraction": float(np.mean(coverage)),
        "overlapping_instances": overlapping / instances,
        "overlapping_same_class": overlapping_same / overlapping if overlapping else nan,
    }


def _union_length(segments: np.ndarray) -> float:
    """Total length covered by the union of ``segments`` (N, 2), sorted by start."""
    total, reach = 0.0, -np.inf
    for start, end in segments:
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return float(total)


# The rows of the side-by-side table: (label, key, format); shares print as percentages.
TABLE_ROWS = (
    ("videos", "videos", "{:.0f}"),
    ("mean duration (s)", "mean_duration", "{:.0f}"),
    ("videos with a single class", "single_class_videos", "{:.0%}"),
    ("consecutive instances, same class", "same_class_consecutive", "{:.0%}"),
    ("same-class gap: median (s)", "gap_median", "{:.1f}"),
    ("same-class gap: under 1 s", "gap_under_1s", "{:.0%}"),
    ("same-class gap: under 3 s", "gap_under_3s", "{:.0%}"),
    ("instances per video: mean", "instances_per_video_mean", "{:.2f}"),
    ("instances per video: median", "instances_per_video_median", "{:.0f}"),
    ("instances per video: max", "instances_per_video_max", "{:.0f}"),
    ("videos with 1 / 2 / 3-4 / 5-8 / >8", "instances_per_video_share", None),
    ("instance length / video: median", "length_fraction_median", "{:.1%}"),
    ("instance length / video: mean", "length_fraction_mean", "{:.1%}"),
    ("instances under 2 % of the video", "length_under_2pct", "{:.0%}"),
    ("instances over 80 % of the video", "length_over_80pct", "{:.0%}"),
    ("fraction of video that is action", "action_fraction", "{:.2f}"),
    ("instances overlapping another", "overlapping_instances", "{:.1%}"),
)


def statistics_table(columns: dict) -> str:
    """A text table of :func:`dataset_statistics` results side by side: ``columns`` maps a heading to a result."""
    names = list(columns)
    width = max(len(label) for label, _, _ in TABLE_ROWS)
    cells = {}
    for name, stats in columns.items():
        for label, key, fmt in TABLE_ROWS:
            value = stats[key]
            if fmt is None:
                cells[name, label] = "/".join(f"{100 * value[b]:.0f}" for b, _, _ in COUNT_BUCKETS) + " %"
            else:
                cells[name, label] = "n/a" if isinstance(value, float) and np.isnan(value) else fmt.format(value)
    col = [max(len(n), *(len(cells[n, label]) for label, _, _ in TABLE_ROWS)) for n in names]
    lines = [f"{'':{width}}  " + "  ".join(f"{n:>{c}}" for n, c in zip(names, col))]
    lines += [f"{label:{width}}  " + "  ".join(f"{cells[n, label]:>{c}}" for n, c in zip(names, col))
              for label, _, _ in TABLE_ROWS]
    return "\n".join(lines)
