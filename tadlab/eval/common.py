"""What detection and proposal evaluation share: tIoU thresholds, the subset, the inputs, and checks of video ids.

* Thresholds: :func:`parse_tiou` builds them with ``np.linspace`` as the official code does (the exact float values
  matter when a tIoU equals a threshold), at most :data:`MAX_TIOU_THRESHOLDS`.
* Subset: the official evaluation scores the "validation" subset unless told otherwise. ``subset="auto"`` (the
  default) does the same when the ground truth holds several subsets and one is "validation"; otherwise every
  video is scored. ``None`` scores every video; any other string, that subset.
* Inputs: a path or parsed JSON dict (read by :mod:`tadlab.data.tables`: times as written, quirks said once), or
  dicts of loaded :class:`~tadlab.data.schema.VideoAnnotations` / ``VideoDetections``.
* Video ids: predictions on videos the evaluated ground truth lacks are scored as the official code scores them,
  but never silently: when no prediction names an evaluated video, evaluation stops with the likely cause (an id
  prefix such as ActivityNet's ``v_``, a file extension, letter case, the subset); when some do not, one warning
  counts them. Predictions ending past their video's duration are scored as written, with one warning (when many
  do, the times are likely snippets or frames, not seconds).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tadlab.data.jsonio import is_path, parse_json, read_text
from tadlab.data.schema import VideoAnnotations, VideoDetections
from tadlab.data.tables import AnnotationWarning, GroundTruthTable, ResultsTable, read_ground_truth, read_results
from tadlab.utils import warn_at_caller

# np.linspace, as the official code builds them: the exact float values matter when a tIoU equals a threshold.
ANET_TIOU = np.linspace(0.5, 0.95, 10)
THUMOS_TIOU = np.linspace(0.3, 0.7, 5)
ANET_TIOU.setflags(write=False)
THUMOS_TIOU.setflags(write=False)
MAX_TIOU_THRESHOLDS = 1000  # a step of 1e-12 would otherwise ask numpy for terabytes
DEFAULT_SUBSET = "auto"


def parse_tiou(spec) -> np.ndarray:
    """tIoU thresholds from ``"start:stop:step"`` (stop included, built with ``np.linspace`` as the official
    code does), ``"0.3,0.5,0.7"`` or ``"0.5"``; arrays and lists pass through after checking.

    Returns float64 (n,), each threshold in [0, 1], 1 <= n <= MAX_TIOU_THRESHOLDS.
    """
    too_many = (f"tiou thresholds: at most {MAX_TIOU_THRESHOLDS} are allowed (the 10 of 0.5:0.95:0.05 are the "
                f"ActivityNet standard), got {{}}")
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                start, stop, step = (float(p) for p in text.split(":"))
                if not (step > 0 and stop >= start):
                    raise ValueError
                count = round((stop - start) / step) + 1
                if count > MAX_TIOU_THRESHOLDS:
                    raise OverflowError
                if abs(start + (count - 1) * step - stop) > 1e-9:
                    raise ValueError
                values = np.linspace(start, stop, count)
            else:
                values = np.array([float(p) for p in text.split(",")])
        except OverflowError:
            raise ValueError(too_many.format(f"{spec!r}, which makes {(stop - start) / step + 1:.3g}")) from None
        except ValueError:
            raise ValueError(f"tiou must look like 'start:stop:step' (e.g. '0.5:0.95:0.05', stop reached by whole "
                             f"steps) or '0.3,0.5,0.7', got {spec!r}") from None
    else:
        size = getattr(spec, "size", None) if not isinstance(spec, (list, tuple)) else len(spec)
        if isinstance(size, int) and size > MAX_TIOU_THRESHOLDS:
            raise ValueError(too_many.format(size))
        try:
            values = np.array(spec, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(f"tiou_thresholds must be numbers or a string like '0.5:0.95:0.05', "
                            f"got {type(spec).__name__} {spec!r}") from None
    if values.size > MAX_TIOU_THRESHOLDS:
        raise ValueError(too_many.format(values.size))
    if values.size == 0 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"tiou_thresholds must be one or more numbers in [0, 1], got {values.tolist()}")
    return values


def resolve_subset(table: GroundTruthTable, subset) -> str | None:
    """The subset to score (None: every video), following the official default for ``"auto"``."""
    if subset is None:
        return None
    if not isinstance(subset, str):
        raise TypeError(f"subset must be a str, 'auto' or None, got {type(subset).__name__} {subset!r}")
    if subset != DEFAULT_SUBSET:
        return subset
    present = set(table.subsets)
    return "validation" if len(present) > 1 and "validation" in present else None


def read_ignore_list(ignore_videos) -> set[str]:
    """Video ids from an iterable, or from a local file: a JSON list, or one id per line."""
    if ignore_videos is None:
        return set()
    if is_path(ignore_videos):
        if not os.path.isfile(ignore_videos):
            raise ValueError(f"ignore_videos: {str(ignore_videos)!r} is not a file; give a local file (JSON list or "
                             f"one video id per line) or an iterable of video ids")
        text = read_text(ignore_videos, "ignore_videos file")
        where = f"ignore_videos file {str(ignore_videos)!r}"
        ids = parse_json(text, where) if text.lstrip().startswith("[") else [
            line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(ids, list):
            raise TypeError(f"{where}: expected a JSON list of video ids or one id per line, "
                            f"got JSON {type(ids).__name__}")
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


# ---------------------------------------------------------------- inputs
def ground_truth_table(source) -> GroundTruthTable:
    if isinstance(source, Mapping) and source and all(isinstance(v, VideoAnnotations) for v in source.values()):
        return GroundTruthTable.from_videos(source)
    if not (is_path(source) or isinstance(source, Mapping)):
        raise TypeError(f"ground_truth must be a path, an ActivityNet JSON dict or a dict of VideoAnnotations, "
                        f"got {type(source).__name__}")
    return read_ground_truth(source)


def results_table(source, labels: bool = True, name: str = "results") -> ResultsTable:
    if isinstance(source, Mapping) and source and all(isinstance(v, VideoDetections) for v in source.values()):
        return ResultsTable.from_videos(source, labels)
    if not (is_path(source) or isinstance(source, Mapping)):
        raise TypeError(f"{name} must be a path, an ActivityNet results dict or a dict of VideoDetections, "
                        f"got {type(source).__name__}")
    return read_results(source, labels)


@dataclass(frozen=True)
class Selection:
    """The ground truth that is scored: videos of the subset (with or without annotations) not ignored.

    video_ids (V,) and index (id -> position); durations (V,); video (N,) position of each scored instance;
    segments (N, 2); labels (N,) list of str; subset: the subset scored (None: every video).
    """

    video_ids: list
    index: dict
    durations: np.ndarray
    video: np.ndarray
    segments: np.ndarray
    labels: list
    subset: str | None


def select_ground_truth(table: GroundTruthTable, subset: str | None, ignore: set) -> Selection:
    keep = [(subset is None or s == subset) and v not in ignore for v, s in zip(table.video_ids, table.subsets)]
    keep = np.array(keep, dtype=bool).reshape(-1)
    position = np.cumsum(keep) - 1
    rows = np.flatnonzero(keep[table.video])
    if len(rows) == 0:
        raise ValueError(f"ground_truth has no annotated instances in subset {subset!r}"
                         f"{' once ignore_videos are left out' if ignore else ''}; subsets present: "
                         f"{sorted(set(table.subsets))}")
    video_ids = [v for v, k in zip(table.video_ids, keep.tolist()) if k]
    return Selection(video_ids, {v: i for i, v in enumerate(video_ids)}, table.durations[keep],
                     position[table.video[rows]], table.segments[rows], [table.labels[i] for i in rows.tolist()],
                     subset)


def align_results(table: ResultsTable, selection: Selection, ignore: set, truth: GroundTruthTable,
                  consequence: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``table`` not on ignored videos (M,) and their scored-video position (M,), -1 where the video is not
    scored; reports video ids that match no scored video (see the module docstring). ``consequence`` says what
    happens to such rows (detection: false positives; proposals: counted, never matched)."""
    position = np.array([selection.index.get(v, -1) for v in table.video_ids], dtype=np.int64).reshape(-1)
    ignored = np.array([v in ignore for v in table.video_ids], dtype=bool).reshape(-1)
    rows = np.flatnonzero(~ignored[table.video])
    video = position[table.video[rows]]
    _report_unmatched(table, rows, video, selection, truth, consequence)
    _report_past_duration(table, rows, video, selection)
    return rows, video


def _report_past_duration(table, rows, video, selection) -> None:
    """One warning for predictions that end past their video's duration; many more than the ground truth's suggest
    snippets or frames."""
    scored = video >= 0
    end = table.segments[rows[scored], 1]
    duration = selection.durations[video[scored]]
    past = end > duration
    if not past.any():
        return
    overshoot = end - duration
    worst = int(np.argmax(np.where(past, overshoot, -np.inf)))
    share = past.mean()
    truth_share = (selection.segments[:, 1] > selection.durations[selection.video]).mean()
    warn_at_caller(f"results: {int(past.sum())} prediction(s) ({100 * share:.3g}% of those on scored videos) end "
                   f"past their video's duration (largest overshoot {overshoot[worst]:.3g} s, in video "
                   f"{selection.video_ids[video[scored][worst]]!r}); scored as written, as officially"
                   + ("; so many suggest times in snippets or frames instead of seconds "
                      "(tadlab.data.detections_to_results converts snippets to seconds)"
                      if share > max(0.2, 2 * truth_share) else ""),
                   AnnotationWarning)


def _report_unmatched(table, rows, video, selection, truth, consequence) -> None:
    if len(rows) == 0 or (video >= 0).all():
        return
    used = np.unique(table.video[rows])
    outside = [table.video_ids[i] for i in used.tolist() if table.video_ids[i] not in selection.index]
    subset_of = dict(zip(truth.video_ids, truth.subsets))
    other = sorted({subset_of[v] for v in outside if v in subset_of})
    unknown = [v for v in outside if v not in subset_of]
    where = "ground-truth video" if selection.subset is None else f"video of subset {selection.subset!r}"
    hint = _id_hint(unknown, truth.video_ids)
    if (video < 0).all():
        if hint:
            cause = hint
        elif other:
            cause = (f"they are videos of subset(s) {other}: choose the subset with subset=... (command line: "
                     f"--subset; 'all' for every video)")
        else:
            cause = (f"e.g. results video {outside[0]!r}, ground-truth video {selection.video_ids[0]!r}: "
                     f"the ids must be the same strings")
        raise ValueError(f"none of the {len(used)} video(s) in the results is a {where}, so every score would be 0; "
                         f"likely cause: {cause}")
    count = int((video < 0).sum())
    parts = []
    if other:
        parts.append(f"{len(outside) - len(unknown)} of subset(s) {other}")
    if unknown:
        parts.append(f"{len(unknown)} that the ground truth lacks, e.g. {unknown[0]!r}" + (f"; {hint}" if hint else ""))
    warn_at_caller(f"{count} prediction(s) on {len(outside)} video(s) that are not a {where} "
                   f"({', '.join(parts)}) {consequence}, as in the official evaluation", UserWarning)


_ID_FIXES = (  # (what is wrong, fix of a results id, the same fix of a ground-truth id)
    ("the results' ids carry a 'v_' prefix that the ground truth's lack", lambda i: i[2:] if i[:2] == "v_" else None,
     None),
    ("the ground truth's ids carry a 'v_' prefix (as ActivityNet's do) that the results' lack", lambda i: "v_" + i,
     None),
    ("the results' ids end in a file extension", lambda i: os.path.splitext(i)[0] or None, None),
    ("the ids differ in upper and lower case", str.lower, str.lower),
    ("the results' ids carry spaces around them", str.strip, None),
)


def _id_hint(unknown: list, truth_ids) -> str:
    """The first simple fix under which unknown ids become ground-truth ids, said with an example; else ''."""
    sample = unknown[:1000]
    for problem, fix, fix_truth in _ID_FIXES:
        known = {fix_truth(t): t for t in truth_ids} if fix_truth else {t: t for t in truth_ids}
        matches = [(v, known[fixed]) for v in sample if (fixed := fix(v)) is not None and fixed in known]
        if matches:
            return (f"{problem} ({len(matches)} of {len(sample)} unmatched ids match once fixed, e.g. results "
                    f"{matches[0][0]!r} -> ground truth {matches[0][1]!r})")
    return ""


def pair_tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU of pred (..., 2) with gt (..., 2), elementwise; the official expression, term for term, so that values
    (and ties, and equality with a threshold) are bit-identical. Two zero-length segments give 0/0 = nan."""
    start = np.maximum(pred[..., 0], gt[..., 0])
    end = np.minimum(pred[..., 1], gt[..., 1])
    inter = (end - start).clip(0)
    union = (gt[..., 1] - gt[..., 0]) + (pred[..., 1] - pred[..., 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union
