"""ActivityNet-style JSON for ground truth and results: load, validate, save.

Ground truth (ActivityNet-1.3 and the common THUMOS14 conversion use this schema)::

    {"version": "...", "taxonomy": [...],                       # optional, ignored
     "database": {VIDEO_ID: {"subset": "validation", "duration": 123.4,
                             "annotations": [{"segment": [12.3, 20.0], "label": "Long jump"}, ...],
                             ...}}}                              # extra fields (url, resolution, labelIndex) ignored

Results (what a detector writes and ``tadlab.eval`` reads; proposals may leave out ``label``)::

    {"version": "...", "external_data": {...},                   # optional
     "results": {VIDEO_ID: [{"segment": [12.0, 19.5], "label": "Long jump", "score": 0.93}, ...]}}

Times are seconds. Each video is held as a frozen dataclass with numpy arrays (:class:`VideoAnnotations`,
:class:`VideoDetections`); both compare equal field by field, so ``load(save(x)) == x`` can be checked.

Reading goes through :mod:`tadlab.data.tables` (vectorised; every error names the video, row and field; files are
read by :mod:`tadlab.data.jsonio`). Times are kept exactly as written: real files hold annotations that end or
start past their video's duration, start below 0, repeat or have zero length, and the official evaluation scores
them as they are, so tadlab loads them and says so in one :class:`AnnotationWarning` per kind. What no real file
holds is an error: ``start > end``, NaN or infinite times, non-numbers, ``duration <= 0``.
Training targets need segments inside the video: :meth:`VideoAnnotations.clipped` gives them.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tadlab.data.jsonio import is_path
from tadlab.data.tables import AnnotationWarning, read_ground_truth, read_results, real_number

__all__ = ["AnnotationWarning", "VideoAnnotations", "VideoDetections", "as_ground_truth", "class_names_of",
           "detections_to_results", "ground_truth_to_json", "load_ground_truth", "load_results", "results_to_json",
           "save_ground_truth", "save_results"]


def _segments_array(segments, owner: str) -> np.ndarray:
    """Coerce to a read-only float64 ``(N, 2)`` array of finite ``[start, end]`` with start <= end."""
    array = np.array(segments, dtype=np.float64, copy=True)
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{owner}: segments must have shape (N, 2), got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{owner}: segments[{i}] must be finite seconds, got {array[i].tolist()}")
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
    """Ground truth of one video, in seconds, as written in its file.

    segments: float64 ``(N, 2)`` ``[start, end]`` with ``start <= end`` (real files also hold segments that reach
    past ``duration`` or below 0: kept, see :meth:`clipped`); labels: N class names.
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
        duration = real_number(self.duration, f"{owner}, field 'duration'")
        if duration <= 0:
            raise ValueError(f"{owner}, field 'duration': must be > 0 seconds, got {duration!r}")
        segments = _segments_array(self.segments, owner)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "labels", _labels_tuple(self.labels, len(segments), owner))

    def clipped(self) -> VideoAnnotations:
        """The same video with every segment clipped to ``[0, duration]`` (what a training target needs).

        A segment that starts at or after the end of the video becomes ``[duration, duration]`` (zero length);
        callers building targets drop zero-length segments. Evaluation never clips (the official code does not).
        """
        return VideoAnnotations(self.video_id, self.subset, self.duration, np.clip(self.segments, 0.0, self.duration),
                                self.labels)

    def __eq__(self, other):
        if not isinstance(other, VideoAnnotations):
            return NotImplemented
        return (self.video_id, self.subset, self.duration, self.labels) == (
            other.video_id, other.subset, other.duration, other.labels
        ) and np.array_equal(self.segments, other.segments)


@dataclass(frozen=True, eq=False)
class VideoDetections:
    """Detections of one video, in seconds.

    segments: float64 ``(M, 2)`` ``[start, end]`` with ``start <= end`` (a start below 0 is kept, as the official
    evaluation scores it); scores: float64 ``(M,)``; labels: M class names.
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


# ---------------------------------------------------------------- loading
def _split(video_ids, video: np.ndarray) -> list[tuple[int, int]]:
    """Row range [a, b) of each video of a table (rows are grouped by video, in file order)."""
    bounds = np.searchsorted(video, np.arange(len(video_ids) + 1)).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def load_ground_truth(source) -> dict[str, VideoAnnotations]:
    """Read and validate ActivityNet-style ground truth from a path or an already-parsed dict.

    Returns video id -> :class:`VideoAnnotations` in the file's order, times as written (one
    :class:`AnnotationWarning` per kind of quirk, see :mod:`tadlab.data.tables`).
    """
    table = read_ground_truth(source)
    return {video_id: VideoAnnotations(video_id, subset, duration, table.segments[a:b], table.labels[a:b])
            for video_id, subset, duration, (a, b) in zip(table.video_ids, table.subsets, table.durations.tolist(),
                                                          _split(table.video_ids, table.video))}


def as_ground_truth(source) -> dict[str, VideoAnnotations]:
    """Ground truth from a path, an ActivityNet JSON dict, or an already loaded dict of VideoAnnotations (kept)."""
    if isinstance(source, Mapping) and source and all(isinstance(v, VideoAnnotations) for v in source.values()):
        return dict(source)
    if not (is_path(source) or isinstance(source, Mapping)):
        raise TypeError(f"ground_truth must be a path, an ActivityNet JSON dict or a dict of VideoAnnotations, "
                        f"got {type(source).__name__}")
    return load_ground_truth(source)


def load_results(source) -> dict[str, VideoDetections]:
    """Read and validate a results JSON (``results`` -> video id -> list of segment/label/score) or dict.

    Returns video id -> :class:`VideoDetections` in the file's order (detections in their given order).
    """
    table = read_results(source)
    return {video_id: VideoDetections(video_id, table.segments[a:b], table.scores[a:b], table.labels[a:b])
            for video_id, (a, b) in zip(table.video_ids, _split(table.video_ids, table.video))}


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
    if is_path(videos) or (isinstance(videos, Mapping) and "database" in videos):
        videos = load_ground_truth(videos)
    values: Iterable = videos.values() if isinstance(videos, Mapping) else videos
    names = set()
    for video in values:
        if not hasattr(video, "labels"):
            raise TypeError(f"videos must hold VideoAnnotations or VideoDetections, got {type(video).__name__}")
        names.update(video.labels)
    return sorted(names)
