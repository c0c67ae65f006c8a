"""ActivityNet-style JSON: loading real-looking files, validation messages, warnings, exact round trips."""
import copy
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.data.schema import (
    AnnotationWarning,
    VideoAnnotations,
    VideoDetections,
    class_names_of,
    detections_to_results,
    ground_truth_to_json,
    load_ground_truth,
    load_results,
    results_to_json,
    save_ground_truth,
    save_results,
)

# The shape of ActivityNet-1.3 (extra url/resolution, top-level version/taxonomy) and of the THUMOS14 conversion
# (labelIndex on each annotation); the loader must read both.
ANET = {
    "version": "VERSION 1.3",
    "taxonomy": [{"nodeName": "Long jump", "nodeId": 1, "parentId": 0}],
    "database": {
        "vid_a": {"subset": "training", "duration": 30.5, "resolution": "640x360", "url": "https://example.org/a",
                  "annotations": [{"segment": [1.25, 7.0], "label": "Long jump"},
                                  {"segment": [10, 12.5], "label": "Archery"}]},
        "vid_b": {"subset": "validation", "duration": 12.0, "url": "https://example.org/b",
                  "annotations": [{"segment": [0.0, 3.5], "label": "Long jump"}]},
        "vid_test": {"subset": "testing", "duration": 8.0, "annotations": []},
    },
}
THUMOS = {
    "database": {
        "video_validation_0000051": {
            "subset": "validation", "duration": 169.79,
            "annotations": [{"segment": [44.0, 50.9], "label": "Billiards", "labelIndex": 2},
                            {"segment": [159.5, 169.79], "label": "CliffDiving", "labelIndex": 5}]},
    },
}
RESULTS = {
    "version": "VERSION 1.3",
    "external_data": {"used": True, "details": "I3D"},
    "results": {
        "vid_a": [{"segment": [1.0, 6.5], "label": "Long jump", "score": 0.9},
                  {"segment": [9.5, 12.0], "label": "Archery", "score": 0.25}],
        "vid_b": [],
    },
}


def gt_with(video_id, **changes):
    data = copy.deepcopy(ANET)
    data["database"][video_id].update(changes)
    return data


def gt_annotation(video_id, index, **changes):
    data = copy.deepcopy(ANET)
    data["database"][video_id]["annotations"][index].update(changes)
    return data


def results_detection(index, **changes):
    data = copy.deepcopy(RESULTS)
    data["results"]["vid_a"][index].update(changes)
    return data


def test_loads_activitynet_and_thumos_layouts():
    videos = load_ground_truth(ANET)
    assert list(videos) == ["vid_a", "vid_b", "vid_test"]
    a = videos["vid_a"]
    assert (a.subset, a.duration, a.labels) == ("training", 30.5, ("Long jump", "Archery"))
    np.testing.assert_array_equal(a.segments, [[1.25, 7.0], [10.0, 12.5]])
    assert a.segments.dtype == np.float64 and a.segments.shape == (2, 2)
    assert videos["vid_test"].segments.shape == (0, 2) and videos["vid_test"].labels == ()
    thumos = load_ground_truth(THUMOS)["video_validation_0000051"]
    assert thumos.labels == ("Billiards", "CliffDiving") and thumos.segments[1, 1] == 169.79
    assert class_names_of(videos) == ["Archery", "Long jump"]
    assert class_names_of(ANET) == ["Archery", "Long jump"]


def test_path_and_dict_give_the_same(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(ANET))
    assert load_ground_truth(path) == load_ground_truth(ANET)
    assert load_ground_truth(str(path)) == load_ground_truth(ANET)
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(RESULTS))
    assert load_results(results_path) == load_results(RESULTS)


def test_round_trips_exactly_and_refuses_to_overwrite(tmp_path):
    videos = load_ground_truth(ANET)
    path = save_ground_truth(videos, tmp_path / "sub" / "gt.json")
    assert load_ground_truth(path) == videos
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_ground_truth(videos, path)
    changed = {"vid_b": videos["vid_b"]}
    save_ground_truth(changed, path, overwrite=True)
    assert load_ground_truth(path) == changed

    results = load_results(RESULTS)
    results_path = save_results(results, tmp_path / "results.json")
    assert load_results(results_path) == results
    with pytest.raises(FileExistsError, match="already exists"):
        save_results(results, results_path)
    written = json.loads(results_path.read_text())
    assert set(written) == {"version", "results", "external_data"}
    assert written["results"]["vid_a"][1] == {"segment": [9.5, 12.0], "label": "Archery", "score": 0.25}


def test_equality_sees_every_field():
    video = load_ground_truth(ANET)["vid_a"]
    assert video == VideoAnnotations("vid_a", "training", 30.5, [[1.25, 7.0], [10, 12.5]], ["Long jump", "Archery"])
    assert video != VideoAnnotations("vid_a", "training", 30.5, [[1.25, 7.0], [10, 12.6]], ["Long jump", "Archery"])
    assert video != VideoAnnotations("vid_a", "training", 30.5, [[1.25, 7.0], [10, 12.5]], ["Long jump", "Long jump"])
    assert video != VideoAnnotations("vid_a", "validation", 30.5, [[1.25, 7.0], [10, 12.5]], ["Long jump", "Archery"])
    with pytest.raises(ValueError):  # arrays are read-only: the dataclass is frozen all the way down
        video.segments[0, 0] = 5.0


finite_seconds = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)


@pytest.mark.filterwarnings("ignore::tadlab.data.tables.AnnotationWarning")  # zero-length and repeated rows
@settings(deadline=None, max_examples=30)
@given(st.lists(st.tuples(finite_seconds, finite_seconds, st.sampled_from(["a", "b b", "ç"]),
                          st.floats(allow_nan=False, allow_infinity=False)), max_size=6),
       st.floats(min_value=1e-3, max_value=1e5, allow_nan=False))
def test_round_trip_property(tmp_path_factory, rows, extra):
    segments = [sorted(row[:2]) for row in rows]
    labels = [row[2] for row in rows]
    duration = max([end for _, end in segments], default=0.0) + extra
    videos = {"v": VideoAnnotations("v", "training", duration, segments, labels)}
    results = {"v": VideoDetections("v", segments, [row[3] for row in rows], labels)}
    folder = tmp_path_factory.mktemp("rt")
    assert load_ground_truth(save_ground_truth(videos, folder / "gt.json")) == videos
    assert load_results(save_results(results, folder / "res.json")) == results
    assert load_ground_truth(ground_truth_to_json(videos)) == videos
    assert load_results(results_to_json(results)) == results


def quirky_ground_truth():
    """Every quirk of real annotation files, each in a different video, twice or more."""
    data = copy.deepcopy(ANET)
    data["database"]["vid_a"]["annotations"] += [{"segment": [10.0, 31.0], "label": "Archery"},  # 0.5 s past 30.5
                                                 {"segment": [29.0, 30.6], "label": "Archery"}]
    data["database"]["vid_b"]["annotations"] += [{"segment": [12.5, 14.0], "label": "Archery"},  # starts after 12
                                                 {"segment": [12.0, 13.0], "label": "Archery"}]  # starts at the end
    data["database"]["vid_test"]["annotations"] = [{"segment": [-0.4, 2.0], "label": "Archery"},
                                                   {"segment": [-1.0, -0.5], "label": "Archery"},
                                                   {"segment": [3.0, 3.0], "label": "Archery"},
                                                   {"segment": [1.0, 2.0], "label": "Long jump"},
                                                   {"segment": [1.0, 2.0], "label": "Long jump"}]
    return data


def test_real_file_quirks_are_kept_as_written_with_one_warning_per_kind():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        videos = load_ground_truth(quirky_ground_truth())
    messages = sorted(str(w.message) for w in caught)
    assert all(w.category is AnnotationWarning for w in caught) and len(messages) == 5
    expected = [r"2 annotation\(s\) end past their video's duration \(largest overshoot 0\.5 s, in video 'vid_a'\)",
                r"2 annotation\(s\) start at or after their video's duration \(e\.g\. video 'vid_b'\)",
                r"2 annotation\(s\) start before 0 s \(e\.g\. video 'vid_test'\)",
                r"1 annotation\(s\) have zero length \(e\.g\. video 'vid_test'\)",
                r"1 annotation\(s\) repeat another .*\(e\.g\. video 'vid_test'\)"]
    for pattern in expected:
        assert sum(bool(re.search(pattern, m)) for m in messages) == 1, (pattern, messages)
    # the warnings point at this file (the caller), not at tadlab
    assert {Path(w.filename).name for w in caught} == {"test_schema.py"}
    # times exactly as written
    np.testing.assert_array_equal(videos["vid_a"].segments[2:], [[10.0, 31.0], [29.0, 30.6]])
    np.testing.assert_array_equal(videos["vid_b"].segments[1:], [[12.5, 14.0], [12.0, 13.0]])
    np.testing.assert_array_equal(videos["vid_test"].segments[:3], [[-0.4, 2.0], [-1.0, -0.5], [3.0, 3.0]])
    # training targets clip: [0, duration]
    np.testing.assert_array_equal(videos["vid_b"].clipped().segments, [[0.0, 3.5], [12.0, 12.0], [12.0, 12.0]])
    np.testing.assert_array_equal(videos["vid_test"].clipped().segments[:2], [[0.0, 2.0], [0.0, 0.0]])


def test_results_quirks_are_kept_with_one_warning_per_kind():
    data = results_detection(0, segment=[-0.5, 4.0])
    data["results"]["vid_b"] = [{"segment": [-2.0, -1.0], "label": "x", "score": 0.1},
                                {"segment": [3.0, 3.0], "label": "x", "score": 0.2}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = load_results(data)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and {Path(w.filename).name for w in caught} == {"test_schema.py"}
    assert any(re.search(r"2 prediction\(s\) start before 0 s \(e\.g\. video 'vid_a'\)", m) for m in messages)
    assert any(re.search(r"1 prediction\(s\) have zero length \(e\.g\. video 'vid_b'\)", m) for m in messages)
    np.testing.assert_array_equal(results["vid_a"].segments[0], [-0.5, 4.0])


def test_numpy_values_read_the_same_as_plain_json():
    # Plain JSON takes a vectorised path; dicts holding numpy numbers or tuples take the field-by-field one.
    def numpy_numbers(value):
        if isinstance(value, dict):
            return {key: numpy_numbers(item) for key, item in value.items()}
        if isinstance(value, list):
            return tuple(numpy_numbers(item) for item in value)
        return np.float64(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    data = quirky_ground_truth()
    with warnings.catch_warnings(record=True) as plain_warnings:
        warnings.simplefilter("always")
        plain = load_ground_truth(data)
    with warnings.catch_warnings(record=True) as numpy_warnings:
        warnings.simplefilter("always")
        assert load_ground_truth(numpy_numbers(data)) == plain
    assert [str(w.message) for w in numpy_warnings] == [str(w.message) for w in plain_warnings]
    assert load_results(numpy_numbers(RESULTS)) == load_results(RESULTS)


def test_no_warning_for_clean_files():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ground_truth(ANET)
        load_results(RESULTS)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("data, error, pattern", [
    ({"videos": {}}, ValueError, "'database' key"),
    ({"database": []}, TypeError, "'database' must be an object"),
    ({"database": {"x": []}}, TypeError, "video 'x': expected an object"),
    (gt_with("vid_b", subset=None), TypeError, "video 'vid_b', field 'subset': expected str"),
    (gt_with("vid_b", duration="12.0"), TypeError, "video 'vid_b', field 'duration': expected a number"),
    (gt_with("vid_b", duration=True), TypeError, "video 'vid_b', field 'duration': expected a number"),
    (gt_with("vid_b", duration=0), ValueError, r"video 'vid_b', field 'duration': must be > 0"),
    (gt_with("vid_b", duration=-3.0), ValueError, r"video 'vid_b', field 'duration': must be > 0"),
    (gt_with("vid_b", duration=NAN), ValueError, "video 'vid_b', field 'duration': expected a finite number"),
    (gt_with("vid_b", annotations={"segment": [0, 1]}), TypeError, "video 'vid_b', field 'annotations'"),
    (gt_annotation("vid_a", 1, segment=[12.5, 10.0]), ValueError, r"'vid_a', annotations\[1\], field 'segment': start > end"),
    (gt_annotation("vid_a", 0, segment=[NAN, 10.0]), ValueError, r"'vid_a', annotations\[0\], field 'segment' start: expected a finite"),
    (gt_annotation("vid_a", 0, segment=[1.0, INF]), ValueError, r"'vid_a', annotations\[0\], field 'segment' end: expected a finite"),
    (gt_annotation("vid_a", 0, segment=[1.0, 2.0, 3.0]), ValueError, r"'vid_a', annotations\[0\], field 'segment': expected \[start, end\]"),
    (gt_annotation("vid_a", 0, segment="1-2"), TypeError, r"'vid_a', annotations\[0\], field 'segment': expected"),
    (gt_annotation("vid_a", 0, segment=["1", 2]), TypeError, r"'vid_a', annotations\[0\], field 'segment' start: expected a number"),
    (gt_annotation("vid_a", 0, segment=[True, 3.0]), TypeError, r"'vid_a', annotations\[0\], field 'segment' start: expected a number, got bool"),
    (gt_with("vid_b", subset=["validation"]), TypeError, "video 'vid_b', field 'subset': expected str"),
    (gt_annotation("vid_a", 0, label=3), TypeError, r"'vid_a', annotations\[0\], field 'label': expected str, got int 3"),
    (gt_annotation("vid_a", 0, label=None), TypeError, r"'vid_a', annotations\[0\], field 'label'"),
])
def test_ground_truth_errors_name_the_video_and_field(data, error, pattern):
    with pytest.raises(error, match=pattern):
        load_ground_truth(data)


@pytest.mark.parametrize("field", ["subset", "duration", "annotations"])
def test_missing_video_field(field):
    data = copy.deepcopy(ANET)
    del data["database"]["vid_b"][field]
    with pytest.raises(ValueError, match=f"video 'vid_b': missing field '{field}'"):
        load_ground_truth(data)


@pytest.mark.parametrize("field", ["segment", "label"])
def test_missing_annotation_field(field):
    data = copy.deepcopy(ANET)
    del data["database"]["vid_a"]["annotations"][1][field]
    with pytest.raises(ValueError, match=rf"video 'vid_a', annotations\[1\]: missing field '{field}'"):
        load_ground_truth(data)


@pytest.mark.parametrize("field", ["segment", "label", "score"])
def test_missing_detection_field(field):
    data = copy.deepcopy(RESULTS)
    del data["results"]["vid_a"][0][field]
    with pytest.raises(ValueError, match=rf"results video 'vid_a', detections\[0\]: missing field '{field}'"):
        load_results(data)


@pytest.mark.parametrize("data, error, pattern", [
    ({"database": {}}, ValueError, "'results' key"),
    ({"results": {"vid_a": {"segment": [0, 1]}}}, TypeError, "results video 'vid_a': expected a list"),
    (results_detection(1, score=NAN), ValueError, r"'vid_a', detections\[1\], field 'score': expected a finite"),
    (results_detection(1, score=-INF), ValueError, r"'vid_a', detections\[1\], field 'score': expected a finite"),
    (results_detection(1, score="0.3"), TypeError, r"'vid_a', detections\[1\], field 'score': expected a number"),
    (results_detection(0, segment=[5.0, 4.0]), ValueError, r"'vid_a', detections\[0\], field 'segment': start > end"),
    (results_detection(0, segment=[0.5, None]), TypeError, r"'vid_a', detections\[0\], field 'segment' end"),
    (results_detection(1, score=True), TypeError, r"'vid_a', detections\[1\], field 'score': expected a number"),
    (results_detection(0, segment=[NAN, 4.0]), ValueError, r"'vid_a', detections\[0\], field 'segment' start"),
    (results_detection(0, label=7), TypeError, r"'vid_a', detections\[0\], field 'label': expected str"),
])
def test_results_errors_name_the_video_and_field(data, error, pattern):
    with pytest.raises(error, match=pattern):
        load_results(data)


def test_nan_in_a_json_file_is_caught(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"results": {"v1": [{"segment": [0, 1], "label": "x", "score": NaN}]}}')
    with pytest.raises(ValueError, match=r"'v1', detections\[0\], field 'score'"):
        load_results(path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"database": ')
    with pytest.raises(ValueError, match="broken.json' is not valid JSON"):
        load_ground_truth(broken)


def test_dataclasses_validate_direct_construction():
    past = VideoAnnotations("v", "training", 5.0, [[1, 6], [-1, 2]], ["a", "b"])  # kept as written
    np.testing.assert_array_equal(past.clipped().segments, [[1, 5], [0, 2]])
    with pytest.raises(ValueError, match=r"video 'v': segments\[0\] has start > end"):
        VideoAnnotations("v", "training", 5.0, [[3, 2]], ["a"])
    with pytest.raises(ValueError, match="video 'v': got 1 labels for 2 segments"):
        VideoAnnotations("v", "training", 5.0, [[1, 2], [2, 3]], ["a"])
    with pytest.raises(ValueError, match=r"video 'v': scores\[1\] must be a finite number, got nan"):
        VideoDetections("v", [[1, 2], [2, 3]], [0.5, NAN], ["a", "b"])
    with pytest.raises(ValueError, match=r"video 'v': segments must have shape \(N, 2\)"):
        VideoDetections("v", [1, 2, 3], [0.5], ["a"])
    with pytest.raises(TypeError, match="video_id must be a str"):
        VideoDetections(3, [[1, 2]], [0.5], ["a"])
    with pytest.raises(TypeError, match=r"videos\['a'\] must be a VideoAnnotations"):
        ground_truth_to_json({"a": {"subset": "x"}})
    with pytest.raises(ValueError, match="holds video_id 'v'"):
        results_to_json({"w": VideoDetections("v", [[1, 2]], [0.5], ["a"])})


def test_detections_to_results_uses_the_snippet_grid():
    detections = [
        {"segments": torch.tensor([[10.0, 20.0], [-1.0, 3.0], [95.0, 104.0]]),
         "scores": torch.tensor([0.9, 0.5, 0.4], dtype=torch.bfloat16), "labels": torch.tensor([1, 0, 1])},
        {"segments": np.zeros((0, 2)), "scores": np.zeros(0), "labels": np.zeros(0, dtype=np.int64)},
        {"segments": [[0.0, 1.0]], "scores": [0.7], "labels": ["b"]},
    ]
    results = detections_to_results(detections, ["x", "y", "z"], torch.tensor([50.0, 7.0, 2.0]), 100, ["a", "b"])
    x = results["x"]
    # snippet p of T = 100 in a 50 s video is at p * 0.5 s; the overshooting ends are clipped to [0, 50].
    np.testing.assert_allclose(x.segments, [[5.0, 10.0], [0.0, 1.5], [47.5, 50.0]])
    np.testing.assert_allclose(x.scores, [0.9, 0.5, 0.4], atol=4e-3)  # bfloat16 scores (AMP) are accepted
    assert x.labels == ("b", "a", "b")
    assert results["y"].segments.shape == (0, 2)
    np.testing.assert_allclose(results["z"].segments, [[0.0, 0.02]])
    assert results["z"].labels == ("b",)
    assert load_results(results_to_json(results)) == results


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 500), st.floats(0.1, 1e4), st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=5))
def test_detections_to_results_inverts_seconds_to_snippets(num_snippets, duration, fractions):
    snippets = np.array([sorted(f) for f in fractions]).reshape(-1, 2) * num_snippets
    detection = {"segments": snippets, "scores": np.ones(len(snippets)), "labels": np.zeros(len(snippets), int)}
    seconds = detections_to_results([detection], ["v"], [duration], num_snippets, ["a"])["v"].segments
    np.testing.assert_allclose(seconds * num_snippets / duration, snippets, rtol=1e-12, atol=1e-9)
    assert (seconds >= 0).all() and (seconds <= duration).all()


def test_detections_to_results_errors():
    one = {"segments": [[0.0, 1.0]], "scores": [0.5], "labels": [2]}
    with pytest.raises(ValueError, match=r"video 'v': label 2 is not a class index in \[0, 2\)"):
        detections_to_results([one], ["v"], [5.0], 10, ["a", "b"])
    with pytest.raises(ValueError, match="same length, got 1, 2 and 1"):
        detections_to_results([one], ["v", "w"], [5.0], 10, ["a", "b", "c"])
    with pytest.raises(ValueError, match="'v' appears more than once"):
        detections_to_results([one, one], ["v", "v"], [5.0, 5.0], 10, ["a", "b", "c"])
    with pytest.raises(ValueError, match="video 'v' has duration 0.0"):
        detections_to_results([one], ["v"], [0.0], 10, ["a", "b", "c"])
    with pytest.raises(ValueError, match="num_snippets must be a positive int"):
        detections_to_results([one], ["v"], [5.0], 0, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"video 'v': segments must have shape \(M, 2\), got \(1, 3\)"):
        detections_to_results([{**one, "segments": [[0.0, 1.0, 2.0]]}], ["v"], [5.0], 10, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"video 'v': segments\[0\] has start > end"):
        detections_to_results([{**one, "segments": [[3.0, 1.0]]}], ["v"], [5.0], 10, ["a", "b", "c"])
    with pytest.raises(ValueError, match="video 'v': missing key 'scores'"):
        detections_to_results([{"segments": [[0, 1]], "labels": [0]}], ["v"], [5.0], 10, ["a"])
    with pytest.raises(ValueError, match=r"video 'v': scores\[0\] must be a finite number"):
        detections_to_results([{**one, "scores": [math.nan], "labels": [0]}], ["v"], [5.0], 10, ["a"])
