"""ActivityNet-style JSON for ground truth and results: load, validate, save.

Ground truth (ActivityNet-1.3 and the common THUMOS14 conversion use this schema)::

    {"version": "...", "taxonomy": [...],                       # optional, ignored
     "database": {VIDEO_ID: {"subset": "validation", "duration": 123.4,
                             "annotations": [{"segment": [12.3, 20.0], "label": "Long jump"}, ...],
                             ...}}}                              # extra fields (url, resolution, labelIndex) ignored

Results (what a detector writes and ``tadlab.eval`` reads)::

    {"version": "...", "external_data": {...},                   # optional
     "results": {VIDEO_ID: [{"segment": [12.0, 19.5], "label": "Long jump", "score": 0.93}, ...]}}

Times are seconds. Each video is held as a frozen dataclass with numpy arrays (:class:`VideoAnnotations`,
:class:`VideoDetections`); both compare equal field by field, so ``load(save(x)) == x`` can be checked.

Validation names the video and the field: missing fields, wrong types, ``start > end``, negative, NaN or
infinite times, non-finite scores, ``duration <= 0``. One quirk of real annotations is tolerated but said:
ground-truth segments that start inside the video but end past its ``duration`` (the duration in the metadata is
often a little short) are clipped to the duration, with one :class:`AnnotationWarning` that counts them. A segment
that starts at or after the end of the video is an error. Zero-length segments (``start == end``) are kept.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class AnnotationWarning(UserWarning):
    """A quirk of real annotation data that was tolerated (and changed) on loading."""


def _segments_array(segments, owner: str) -> np.ndarray:
    """Coerce to a read-only float64 ``(N, 2)`` array of finite, non-negative ``[start, end]`` with start <= end."""
    array = np.array(segments, dtype=np.float64, copy=True)
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{owner}: segments must have shape (N, 2), got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{owner}: segments[{i}] must be finite seconds, got {array[i].tolist()}")
    bad = (array < 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{owner}: segments[{i}] must not be negative, got {array[i].tolist()}")
    bad = array[:, 0] > array[:, 1]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{owner}: segments[{i}] has start > end, got {array[i].tolist()}; expected [start, end]")
    array.setflags(write=False)
    return array


def _labels_tuple(labels, count: int, owner: str) -> tuple:
    labels = tuple(labels)
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"{owner}: labels[{i}] must be a str, got {type(label).__name__} {label!r}")
    if len(labels) != count:
        raise ValueError(f"{owner}: got {len(labels)} labels for {count} segments; expected one label per segment")
    return labels


def _check_video_id(video_id) -> None:
    if not isinstance(video_id, str):
        raise TypeError(f"video_id must be a str, got {type(video_id).__name__} {video_id!r}")


@dataclass(frozen=True, eq=False)
class VideoAnnotations:
    """Ground truth of one video, in seconds.

    segments: float64 ``(N, 2)`` ``[start, end]`` with ``0 <= start <= end <= duration``; labels: N class names.
    """

    video_id: str
    subset: str
    duration: float
    segments: np.ndarray
    labels: tuple

    def __post_init__(self):
        _check_video_id(self.video_id)
        owner = f"video {self.video_id!r}"
        if not isinstance(self.subset, str):
            raise TypeError(f"{owner}: subset must be a str, got {type(self.subset).__name__} {self.subset!r}")
        duration = _real(self.duration, f"{owner}, field 'duration'")
        if duration <= 0:
            raise ValueError(f"{owner}, field 'duration': must be > 0 seconds, got {duration!r}")
        segments = _segments_array(self.segments, owner)
        past = segments[:, 1] > duration
        if past.any():
            i = int(np.flatnonzero(past)[0])
            raise ValueError(f"{owner}: segments[{i}] = {segments[i].tolist()} ends past the duration {duration!r}")
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "labels", _labels_tuple(self.labels, len(segments), owner))

    def __eq__(self, other):
        if not isinstance(other, VideoAnnotations):
            return NotImplemented
        return (self.video_id, self.subset, self.duration, self.labels) == (
            other.video_id, other.subset, other.duration, other.labels
        ) and np.array_equal(self.segments, other.segments)


@dataclass(frozen=True, eq=False)
class VideoDetections:
    """Detections of one video, in seconds.

    segments: float64 ``(M, 2)`` ``[start, end]``; scores: float64 ``(M,)``; labels: M class names.
    """

    video_id: str
    segments: np.ndarray
    scores: np.ndarray
    labels: tuple

    def __post_init__(self):
        _check_video_id(self.video_id)
        owner = f"video {self.video_id!r}"
        segments = _segments_array(self.segments, owner)
        scores = np.array(self.scores, dtype=np.float64, copy=True).reshape(-1)
        if len(scores) != len(segments):
            raise ValueError(f"{owner}: got {len(scores)} scores for {len(segments)} segments; expected one each")
        bad = ~np.isfinite(scores)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{owner}: scores[{i}] must be a finite number, got {float(scores[i])!r}")
        scores.setflags(write=False)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", _labels_tuple(self.labels, len(segments), owner))

    def __eq__(self, other):
        if not isinstance(other, VideoDetections):
            return NotImplemented
        return (
            (self.video_id, self.labels) == (other.video_id, other.labels)
            and np.array_equal(self.segments, other.segments)
            and np.array_equal(self.scores, other.scores)
        )


# ---------------------------------------------------------------- reading JSON, field by field
def _real(value, where: str) -> float:
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
    start = _real(value[0], f"{where}, field 'segment' start")
    end = _real(value[1], f"{where}, field 'segment' end")
    if start < 0 or end < 0:
        raise ValueError(f"{where}, field 'segment': times must not be negative, got [{start!r}, {end!r}]")
    if start > end:
        raise ValueError(f"{where}, field 'segment': start > end, got [{start!r}, {end!r}]; expected [start, end]")
    return start, end


def _read_json(source, top_key: str, what: str) -> Mapping:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {exc}") from exc
    elif isinstance(source, Mapping):
        data = source
    else:
        raise TypeError(f"{what} source must be a path or a dict, got {type(source).__name__}")
    if not isinstance(data, Mapping) or top_key not in data:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{what} must be a JSON object with a {top_key!r} key, got {keys}")
    if not isinstance(data[top_key], Mapping):
        raise TypeError(f"{what} field {top_key!r} must be an object video id -> entry, "
                        f"got {type(data[top_key]).__name__}")
    return data[top_key]


_PLAIN_NUMBERS = (int, float)  # what json.loads gives; bool is a type of its own and stays out


def _rows_fast(rows, with_score: bool):
    """Vectorised reading of a well-formed list of plain-JSON rows; None when any row needs the checked path.

    Checks only types here; values (finite, order, sign) are checked on the arrays. Exists for speed: a results
    file of 100,000 detections is read in a fraction of the time the field-by-field path takes.
    """
    try:
        if not all(type(row) is dict for row in rows):
            return None
        segments = [row["segment"] for row in rows]
        labels = [row["label"] for row in rows]
        scores = [row["score"] for row in rows] if with_score else []
    except KeyError:
        return None
    if not (all(type(seg) in (list, tuple) and len(seg) == 2 for seg in segments)
            and all(type(value) in _PLAIN_NUMBERS for seg in segments for value in seg)
            and all(type(label) is str for label in labels)
            and all(type(score) in _PLAIN_NUMBERS for score in scores)):
        return None
    segment_array = np.array(segments, dtype=np.float64).reshape(-1, 2)
    score_array = np.array(scores, dtype=np.float64)
    if not (np.isfinite(segment_array).all() and np.isfinite(score_array).all() and (segment_array >= 0).all()
            and (segment_array[:, 0] <= segment_array[:, 1]).all()):
        return None
    return segment_array, labels, score_array


def _rows_checked(rows, where: str, row_name: str, with_score: bool):
    """Field-by-field reading of a list of rows; raises naming the video, row and field of the first problem."""
    segments, labels, scores = [], [], []
    for j, row in enumerate(rows):
        at = f"{where}, {row_name}[{j}]"
        if not isinstance(row, Mapping):
            fields = "segment, label, score" if with_score else "segment and label"
            raise TypeError(f"{at}: expected an object with {fields}, got {type(row).__name__}")
        segments.append(_segment(row, at))
        labels.append(_field(row, "label", str, at))
        if with_score:
            scores.append(_real(_field(row, "score", None, at), f"{at}, field 'score'"))
    return np.array(segments, dtype=np.float64).reshape(-1, 2), labels, np.array(scores, dtype=np.float64)


def _read_rows(rows, where: str, row_name: str, with_score: bool):
    """(segments (N, 2) float64, labels list[str], scores (N,) float64 or empty) of a validated list of rows."""
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"{where}: expected a list of {row_name}, got {type(rows).__name__}")
    return _rows_fast(rows, with_score) or _rows_checked(rows, where, row_name, with_score)


def load_ground_truth(source) -> dict[str, VideoAnnotations]:
    """Read and validate ActivityNet-style ground truth from a path or an already-parsed dict.

    Returns video id -> :class:`VideoAnnotations` in the file's order. Segments that start inside the video and
    end past its duration are clipped to it, with one :class:`AnnotationWarning` that counts them.
    """
    database = _read_json(source, "database", "ground truth")
    videos, clipped = {}, []
    for video_id, entry in database.items():
        where = f"ground truth video {video_id!r}"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected an object with subset, duration, annotations, "
                            f"got {type(entry).__name__}")
        subset = _field(entry, "subset", str, where)
        duration = _real(_field(entry, "duration", None, where), f"{where}, field 'duration'")
        if duration <= 0:
            raise ValueError(f"{where}, field 'duration': must be > 0 seconds, got {duration!r}")
        annotations = _field(entry, "annotations", None, where)
        if not isinstance(annotations, (list, tuple)):
            raise TypeError(f"{where}, field 'annotations': expected a list, got {type(annotations).__name__}")
        segments, labels, _ = _read_rows(annotations, where, "annotations", with_score=False)
        outside = np.flatnonzero(segments[:, 0] >= duration)
        if len(outside):
            j = int(outside[0])
            raise ValueError(f"{where}, annotations[{j}], field 'segment': starts at {float(segments[j, 0])!r} s, "
                             f"at or after the end of the video (duration {duration!r} s); expected start < duration")
        past = segments[:, 1] > duration
        if past.any():
            clipped += [(float(end - duration), video_id) for end in segments[past, 1]]
            segments[past, 1] = duration
        videos[video_id] = VideoAnnotations(video_id, subset, duration, segments, labels)
    if clipped:
        overshoot, worst = max(clipped)
        warnings.warn(
            f"clipped {len(clipped)} ground-truth segment(s) that end past their video's duration "
            f"(largest overshoot {overshoot:.3g} s, in video {worst!r})", AnnotationWarning, stacklevel=2)
    return videos


def as_ground_truth(source) -> dict[str, VideoAnnotations]:
    """Ground truth from a path, an ActivityNet JSON dict, or an already loaded dict of VideoAnnotations (kept)."""
    if isinstance(source, Mapping) and source and all(isinstance(v, VideoAnnotations) for v in source.values()):
        return dict(source)
    if not isinstance(source, (str, os.PathLike, Mapping)):
        raise TypeError(f"ground_truth must be a path, an ActivityNet JSON dict or a dict of VideoAnnotations, "
                        f"got {type(source).__name__}")
    return load_ground_truth(source)


def load_results(source) -> dict[str, VideoDetections]:
    """Read and validate a results JSON (``results`` -> video id -> list of segment/label/score) or dict.

    Returns video id -> :class:`VideoDetections` in the file's order (detections in their given order).
    """
    entries = _read_json(source, "results", "results")
    videos = {}
    for video_id, detections in entries.items():
        segments, labels, scores = _read_rows(detections, f"results video {video_id!r}", "detections", with_score=True)
        videos[video_id] = VideoDetections(video_id, segments, scores, labels)
    return videos


# ---------------------------------------------------------------- writing JSON
def _check_values(videos: Mapping, kind: type, name: str) -> None:
    if not isinstance(videos, Mapping):
        raise TypeError(f"{name} must be a dict video id -> {kind.__name__}, got {type(videos).__name__}")
    for key, video in videos.items():
        if not isinstance(video, kind):
            raise TypeError(f"{name}[{key!r}] must be a {kind.__name__}, got {type(video).__name__}")
        if video.video_id != key:
            raise ValueError(f"{name}[{key!r}] holds video_id {video.video_id!r}; expected the key and id to agree")


def ground_truth_to_json(videos: Mapping[str, VideoAnnotations], version: str = "tadlab") -> dict:
    """The ActivityNet ground-truth dict (``version``, ``database``) of ``videos``; floats kept exactly."""
    _check_values(videos, VideoAnnotations, "videos")
    database = {
        video_id: {
            "subset": video.subset,
            "duration": video.duration,
            "annotations": [{"segment": [float(s), float(e)], "label": label}
                            for (s, e), label in zip(video.segments, video.labels)],
        }
        for video_id, video in videos.items()
    }
    return {"version": version, "database": database}


def results_to_json(results: Mapping[str, VideoDetections], version: str = "tadlab") -> dict:
    """The ActivityNet results dict (``version``, ``results``, ``external_data``) of ``results``."""
    _check_values(results, VideoDetections, "results")
    entries = {
        video_id: [{"segment": [float(s), float(e)], "label": label, "score": float(score)}
                   for (s, e), label, score in zip(video.segments, video.labels, video.scores)]
        for video_id, video in results.items()
    }
    return {"version": version, "results": entries, "external_data": {"used": False, "details": ""}}


def _write_json(data: dict, path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"path {str(path)!r} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # json writes floats with repr, which reads back to the same float64: the round trip is exact.
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    return path


def save_ground_truth(videos: Mapping[str, VideoAnnotations], path, overwrite: bool = False,
                      version: str = "tadlab") -> Path:
    """Write ``videos`` as ActivityNet ground truth JSON; refuses to replace a file unless ``overwrite``."""
    return _write_json(ground_truth_to_json(videos, version), path, overwrite)


def save_results(results: Mapping[str, VideoDetections], path, overwrite: bool = False,
                 version: str = "tadlab") -> Path:
    """Write ``results`` as ActivityNet results JSON; refuses to replace a file unless ``overwrite``."""
    return _write_json(results_to_json(results, version), path, overwrite)


# ---------------------------------------------------------------- detector output -> results
def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU or in bfloat16 (which numpy lacks)
        value = value.detach().cpu()
        value = (value.double() if value.is_floating_point() else value).numpy()
    return np.asarray(value)


def detections_to_results(detections: Sequence[Mapping], video_ids: Sequence[str], durations,
                          num_snippets: int, class_names: Sequence[str]) -> dict[str, VideoDetections]:
    """Turn a detector's per-video detections (snippet units) into results in seconds.

    detections[i]: ``{"segments": (M, 2) snippet units, "scores": (M,), "labels": (M,) int class index or str}``
    for video ``video_ids[i]`` of ``durations[i]`` seconds cut into ``num_snippets`` snippets: snippet t covers
    ``[t * d / T, (t + 1) * d / T)`` seconds, so a position p becomes ``p * d / T``. Segments are clipped to
    ``[0, d]`` because box regression can overshoot the video's ends.
    """
    if isinstance(num_snippets, bool) or not isinstance(num_snippets, numbers.Integral) or num_snippets <= 0:
        raise ValueError(f"num_snippets must be a positive int, got {num_snippets!r}")
    durations = _numpy(durations).astype(np.float64).reshape(-1)
    video_ids = list(video_ids)
    if not (len(detections) == len(video_ids) == len(durations)):
        raise ValueError(f"detections, video_ids and durations must have the same length, got "
                         f"{len(detections)}, {len(video_ids)} and {len(durations)}")
    class_names = list(class_names)
    results = {}
    for video_detections, video_id, duration in zip(detections, video_ids, durations.tolist()):
        where = f"detections of video {video_id!r}"
        if video_id in results:
            raise ValueError(f"video_ids: {video_id!r} appears more than once; expected each video once")
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"durations: video {video_id!r} has duration {duration!r}; expected > 0 seconds")
        for key in ("segments", "scores", "labels"):
            if key not in video_detections:
                raise ValueError(f"{where}: missing key {key!r} (keys present: {sorted(video_detections)})")
        segments = _numpy(video_detections["segments"]).astype(np.float64)
        if segments.size == 0:
            segments = segments.reshape(0, 2)
        if segments.ndim != 2 or segments.shape[1] != 2:
            raise ValueError(f"{where}: segments must have shape (M, 2), got {segments.shape}")
        seconds = np.clip(segments * (duration / num_snippets), 0.0, duration)
        names = []
        for label in _numpy(video_detections["labels"]).reshape(-1).tolist():
            if isinstance(label, str):
                names.append(label)
            elif isinstance(label, int) and 0 <= label < len(class_names):
                names.append(class_names[label])
            else:
                raise ValueError(f"{where}: label {label!r} is not a class index in [0, {len(class_names)}) "
                                 f"or a class name")
        scores = _numpy(video_detections["scores"]).astype(np.float64).reshape(-1)
        results[video_id] = VideoDetections(video_id, seconds, scores, names)
    return results


def class_names_of(videos) -> list[str]:
    """Sorted unique labels of ground truth (dict of :class:`VideoAnnotations`, a JSON dict, or a path)."""
    if isinstance(videos, (str, os.PathLike)) or (isinstance(videos, Mapping) and "database" in videos):
        videos = load_ground_truth(videos)
    values: Iterable = videos.values() if isinstance(videos, Mapping) else videos
    names = set()
    for video in values:
        if not hasattr(video, "labels"):
            raise TypeError(f"videos must hold VideoAnnotations or VideoDetections, got {type(video).__name__}")
        names.update(video.labels)
    return sorted(names)
