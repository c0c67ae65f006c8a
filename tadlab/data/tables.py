"""Every row of an ActivityNet ground-truth or results file as flat numpy arrays: read vectorised, checked, quirks said.

:func:`read_ground_truth` and :func:`read_results` take a path or an already parsed dict (see
:mod:`tadlab.data.schema` for the layout) and return a :class:`GroundTruthTable` or :class:`ResultsTable`: one
row per annotation or prediction, in file order, times in seconds exactly as written. Evaluation works on these
tables directly; :func:`tadlab.data.schema.load_ground_truth` and ``load_results`` build per-video objects from them.

What is rejected, naming the video, row and field: missing fields, wrong types (a number must be an int or float,
not a string or a bool), NaN or infinite times and scores, ``start > end``, ``duration <= 0``.

What real files contain and is kept as written, with one :class:`AnnotationWarning` per kind that counts the rows
and names an example video (evaluation scores raw times, as the official code does; only training targets clip):

* ground truth: annotations ending past their video's duration (215 in ActivityNet-1.3), starting at or after it
  (30 in THUMOS14's test annotations), starting below 0, of zero length, or duplicated (same video, label, times);
* results: predictions starting below 0 (box regression overshoots) or of zero length.

Speed: a well-formed file is checked with a few C-level passes over all rows at once (``map``, ``itertools.chain``,
``np.fromiter``), about a microsecond per row; only a file with a problem takes the field-by-field path, which
finds the first problem and names it.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np

from tadlab.data.jsonio import is_path, paused_gc, read_json
from tadlab.utils import warn_at_caller


class AnnotationWarning(UserWarning):
    """A quirk of a real annotation or results file (see :mod:`tadlab.data.tables`): loaded as written, and said."""


@dataclass(frozen=True, eq=False)
class GroundTruthTable:
    """Ground truth as flat arrays, file order.

    video_ids, subsets (V,) every video of the database (with or without annotations); durations float64 (V,);
    video int64 (N,) index into video_ids of each annotation (non-decreasing); segments float64 (N, 2) raw
    ``[start, end]`` seconds; labels list of N str.
    """

    video_ids: tuple
    subsets: tuple
    durations: np.ndarray
    video: np.ndarray
    segments: np.ndarray
    labels: list

    @classmethod
    def from_videos(cls, videos: Mapping) -> GroundTruthTable:
        """From a dict video id -> :class:`~tadlab.data.schema.VideoAnnotations` (already validated)."""
        values = list(videos.values())
        counts = [len(video.labels) for video in values]
        return cls(tuple(videos), tuple(video.subset for video in values),
                   np.array([video.duration for video in values], dtype=np.float64),
                   np.repeat(np.arange(len(values)), counts),
                   np.concatenate([video.segments for video in values]).reshape(-1, 2) if values else np.zeros((0, 2)),
                   [label for video in values for label in video.labels])


@dataclass(frozen=True, eq=False)
class ResultsTable:
    """Predictions (or proposals) as flat arrays, file order.

    video_ids (V,) every video of the results; video int64 (M,) index into video_ids of each prediction;
    segments float64 (M, 2) raw seconds; scores float64 (M,); labels list of M str, or None when read without them.
    """

    video_ids: tuple
    video: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    labels: list | None

    @classmethod
    def from_videos(cls, videos: Mapping, labels: bool = True) -> ResultsTable:
        """From a dict video id -> :class:`~tadlab.data.schema.VideoDetections` (already validated)."""
        values = list(videos.values())
        counts = [len(video.scores) for video in values]
        segments = np.concatenate([video.segments for video in values]).reshape(-1, 2) if values else np.zeros((0, 2))
        scores = np.concatenate([video.scores for video in values]) if values else np.zeros(0)
        return cls(tuple(videos), np.repeat(np.arange(len(values)), counts), segments, scores,
                   [label for video in values for label in video.labels] if labels else None)


# ---------------------------------------------------------------- reading
def read_ground_truth(source) -> GroundTruthTable:
    """Read and check ActivityNet ground truth (path or parsed dict with ``"database"``); warn once per quirk."""
    with paused_gc():  # a file's parsed objects are freed before the collector resumes (see tadlab.data.jsonio)
        database = _top_level(source, "database", "ground truth")
        ids = list(database)
        try:
            table = _ground_truth_fast(ids, list(database.values()))
        except _Irregular:
            table = _ground_truth_checked(ids, database)
        del database
    _warn_ground_truth_quirks(table)
    return table


def read_results(source, labels: bool = True) -> ResultsTable:
    """Read and check an ActivityNet results file (path or parsed dict with ``"results"``); warn once per quirk.

    ``labels=False`` (proposals): a row needs only ``segment`` and ``score``; a ``label`` is ignored.
    """
    with paused_gc():  # a file's parsed objects are freed before the collector resumes (see tadlab.data.jsonio)
        entries = _top_level(source, "results", "results")
        ids = list(entries)
        try:
            table = _results_fast(ids, list(entries.values()), labels)
        except _Irregular:
            table = _results_checked(ids, entries, labels)
        del entries
    _warn_results_quirks(table)
    return table


def _top_level(source, key: str, what: str) -> Mapping:
    if is_path(source):
        data = read_json(source, f"{what} file")
    elif isinstance(source, Mapping):
        data = source
    else:
        raise TypeError(f"{what} source must be a path or a dict, got {type(source).__name__}")
    if not isinstance(data, Mapping) or key not in data:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{what} must be a JSON object with a {key!r} key, got {keys}")
    if not isinstance(data[key], Mapping):
        raise TypeError(f"{what} field {key!r} must be an object video id -> entry, got {type(data[key]).__name__}")
    return data[key]


# ---------------------------------------------------------------- the vectorised path
class _Irregular(Exception):
    """Something the vectorised path does not take: the field-by-field path finds and names it."""


_NUMBER_TYPES = {int, float}  # what json gives for numbers; bool is a type of its own and stays out


def _only(values, allowed: set) -> None:
    if not set(map(type, values)) <= allowed:
        raise _Irregular


def _rows(lists: list, with_score: bool, with_label: bool):
    """Flatten lists of well-formed rows: (counts (V,), segments (N, 2), labels or None, scores (N,) or None)."""
    _only(lists, {list})
    counts = np.fromiter(map(len, lists), np.int64, len(lists))
    rows = list(chain.from_iterable(lists))
    try:  # a row that is not a dict, or lacks a field, raises here
        segments = list(map(itemgetter("segment"), rows))
        labels = list(map(itemgetter("label"), rows)) if with_label else None
        scores = list(map(itemgetter("score"), rows)) if with_score else None
        if not set(map(len, segments)) <= {2}:
            raise _Irregular
    except (KeyError, TypeError):
        raise _Irregular from None
    times = list(chain.from_iterable(segments))
    _only(times, _NUMBER_TYPES)  # also catches a 2-character string or a 2-key dict posing as a segment
    if with_label:
        _only(labels, {str})
    if with_score:
        _only(scores, _NUMBER_TYPES)
    segments = np.fromiter(times, np.float64, len(times)).reshape(-1, 2)
    if not (np.isfinite(segments).all() and (segments[:, 0] <= segments[:, 1]).all()):
        raise _Irregular
    scores = np.fromiter(scores, np.float64, len(scores)) if with_score else None
    if with_score and not np.isfinite(scores).all():
        raise _Irregular
    return counts, segments, labels, scores


def _ground_truth_fast(ids: list, entries: list) -> GroundTruthTable:
    try:
        subsets = list(map(itemgetter("subset"), entries))
        durations = list(map(itemgetter("duration"), entries))
        annotations = list(map(itemgetter("annotations"), entries))
    except (KeyError, TypeError):
        raise _Irregular from None
    _only(subsets, {str})
    _only(durations, _NUMBER_TYPES)
    durations = np.fromiter(durations, np.float64, len(durations))
    if not (np.isfinite(durations) & (durations > 0)).all():
        raise _Irregular
    counts, segments, labels, _ = _rows(annotations, with_score=False, with_label=True)
    return GroundTruthTable(tuple(ids), tuple(subsets), durations, np.repeat(np.arange(len(ids)), counts),
                            segments, labels)


def _results_fast(ids: list, lists: list, labels: bool) -> ResultsTable:
    counts, segments, names, scores = _rows(lists, with_score=True, with_label=labels)
    return ResultsTable(tuple(ids), np.repeat(np.arange(len(ids)), counts), segments, scores, names)


# ---------------------------------------------------------------- the field-by-field path
def real_number(value, where: str) -> float:
    """A finite real number (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return value


def _field(entry: Mapping, name: str, kind, where: str):
    if name not in entry:
        raise ValueError(f"{where}: missing field {name!r} (fields present: {sorted(entry)})")
    value = entry[name]
    if kind is not None and not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TypeError(f"{where}, field {name!r}: expected {expected}, got {type(value).__name__} {value!r}")
    return value


def _segment(entry: Mapping, where: str) -> tuple[float, float]:
    value = _field(entry, "segment", (list, tuple, np.ndarray), where)
    if len(value) != 2:
        raise ValueError(f"{where}, field 'segment': expected [start, end], got {list(value)!r}")
    start = real_number(value[0], f"{where}, field 'segment' start")
    end = real_number(value[1], f"{where}, field 'segment' end")
    if start > end:
        raise ValueError(f"{where}, field 'segment': start > end, got [{start!r}, {end!r}]; expected [start, end]")
    return start, end


def _rows_checked(rows, where: str, row_name: str, with_score: bool, with_label: bool):
    """Field-by-field reading of a list of rows; raises naming the video, row and field of the first problem."""
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"{where}: expected a list of {row_name}, got {type(rows).__name__}")
    segments, labels, scores = [], [], []
    for j, row in enumerate(rows):
        at = f"{where}, {row_name}[{j}]"
        if not isinstance(row, Mapping):
            fields = ("segment, label, score" if with_label else "segment, score") if with_score else "segment, label"
            raise TypeError(f"{at}: expected an object with {fields}, got {type(row).__name__}")
        segments.append(_segment(row, at))
        if with_label:
            labels.append(_field(row, "label", str, at))
        if with_score:
            scores.append(real_number(_field(row, "score", None, at), f"{at}, field 'score'"))
    return np.array(segments, dtype=np.float64).reshape(-1, 2), labels, np.array(scores, dtype=np.float64)


def _ground_truth_checked(ids: list, database: Mapping) -> GroundTruthTable:
    subsets, durations, counts, segments, labels = [], [], [], [], []
    for video_id, entry in database.items():
        where = f"ground truth video {video_id!r}"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected an object with subset, duration, annotations, "
                            f"got {type(entry).__name__}")
        subsets.append(_field(entry, "subset", str, where))
        duration = real_number(_field(entry, "duration", None, where), f"{where}, field 'duration'")
        if duration <= 0:
            raise ValueError(f"{where}, field 'duration': must be > 0 seconds, got {duration!r}")
        durations.append(duration)
        annotations = _field(entry, "annotations", None, where)
        if not isinstance(annotations, (list, tuple)):
            raise TypeError(f"{where}, field 'annotations': expected a list, got {type(annotations).__name__}")
        video_segments, video_labels, _ = _rows_checked(annotations, where, "annotations", False, True)
        counts.append(len(video_labels))
        segments.append(video_segments)
        labels += video_labels
    return GroundTruthTable(tuple(ids), tuple(subsets), np.array(durations, dtype=np.float64),
                            np.repeat(np.arange(len(ids)), counts),
                            np.concatenate(segments) if segments else np.zeros((0, 2)), labels)


def _results_checked(ids: list, entries: Mapping, labels: bool) -> ResultsTable:
    counts, segments, names, scores = [], [], [], []
    for video_id, rows in entries.items():
        video_segments, video_labels, video_scores = _rows_checked(rows, f"results video {video_id!r}",
                                                                   "detections", True, labels)
        counts.append(len(video_scores))
        segments.append(video_segments)
        scores.append(video_scores)
        names += video_labels
    return ResultsTable(tuple(ids), np.repeat(np.arange(len(ids)), counts),
                        np.concatenate(segments) if segments else np.zeros((0, 2)),
                        np.concatenate(scores) if scores else np.zeros(0), names if labels else None)


# ---------------------------------------------------------------- quirks: kept as written, counted, said once each
def _say(what: str, mask: np.ndarray, video_ids, video, text: str) -> None:
    """One AnnotationWarning: '<what>: <count> <text>' with an example video, when ``mask`` holds any row."""
    if mask.any():
        example = video_ids[video[int(np.flatnonzero(mask)[0])]]
        text = text.replace("{example}", f"e.g. video {example!r}")  # not str.format: ids may hold braces
        warn_at_caller(f"{what}: {int(mask.sum())} {text}", AnnotationWarning)


def _warn_ground_truth_quirks(table: GroundTruthTable) -> None:
    start, end = table.segments[:, 0], table.segments[:, 1]
    duration = table.durations[table.video]
    ids, video = table.video_ids, table.video
    kept = "kept as written (the official evaluation never reads the duration; training targets clip them)"
    after = start >= duration
    _say("ground truth", after, ids, video, f"annotation(s) start at or after their video's duration "
                                            f"({{example}}); {kept}")
    past = (end > duration) & ~after
    if past.any():
        overshoot = np.where(past, end - duration, -np.inf)
        worst = int(np.argmax(overshoot))
        _say("ground truth", past, ids, video, f"annotation(s) end past their video's duration (largest overshoot "
                                               f"{overshoot[worst]:.3g} s, in video {ids[video[worst]]!r}); {kept}")
    _say("ground truth", start < 0, ids, video, "annotation(s) start before 0 s ({example}); kept as written, as "
                                                "the official evaluation scores them")
    _say("ground truth", start == end, ids, video, "annotation(s) have zero length ({example}); kept: the official "
                                                   "evaluation matches them to any zero-length prediction of their "
                                                   "video and class (tIoU 0/0)")
    _say("ground truth", duplicate_rows(video, table.labels, table.segments), ids, video,
         "annotation(s) repeat another of the same video, label and times ({example}); kept, each counts as an "
         "instance to find, as officially (tadlab.eval: drop_duplicate_gt=True counts them once)")


def _warn_results_quirks(table: ResultsTable) -> None:
    start, end = table.segments[:, 0], table.segments[:, 1]
    scored = "scored as written, as the official evaluation does"
    _say("results", start < 0, table.video_ids, table.video, f"prediction(s) start before 0 s ({{example}}); {scored}")
    _say("results", start == end, table.video_ids, table.video, f"prediction(s) have zero length ({{example}}); "
                                                                f"{scored}")


def duplicate_rows(video: np.ndarray, labels: list, segments: np.ndarray) -> np.ndarray:
    """(N,) bool: rows identical in (video, label, start, end) to an earlier row."""
    if len(video) < 2:
        return np.zeros(len(video), dtype=bool)
    codes = {}
    label_code = np.fromiter((codes.setdefault(label, len(codes)) for label in labels), np.int64, len(labels))
    order = np.lexsort((np.arange(len(video)), segments[:, 1], segments[:, 0], label_code, video))
    keys = np.stack([video, label_code, segments[:, 0], segments[:, 1]], axis=1)[order]
    same = np.zeros(len(video), dtype=bool)
    same[order[1:]] = (keys[1:] == keys[:-1]).all(axis=1)
    return same
