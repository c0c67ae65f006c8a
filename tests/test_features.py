"""Real-feature path: the time mapping, resampling, FeatureDataset checks, and collate_videos."""
import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.data.collate import collate_videos
from tadlab.data.features import (
    FeatureDataset,
    feature_times,
    resample_features,
    snippet_times,
)
from tadlab.data.schema import AnnotationWarning, load_ground_truth

I3D = {"fps": 25, "stride": 16, "window": 16}


def test_feature_times_worked_example():
    # I3D at 25 fps, stride 16, window 16: 0.64 s apart, centred at 0.32 s.
    np.testing.assert_allclose(feature_times(4, **I3D), [0.32, 0.96, 1.60, 2.24])
    np.testing.assert_allclose(feature_times(3, fps=30, stride=8, window=16), [8 / 30, 16 / 30, 24 / 30])
    np.testing.assert_allclose(snippet_times(5, 10.0), [1, 3, 5, 7, 9])
    assert feature_times(0, **I3D).shape == (0,)


def test_resample_worked_example_from_the_docstring():
    rows = np.random.default_rng(0).normal(size=(15, 3))  # a 10 s video has 15 full I3D windows
    out = resample_features(rows, 5, 10.0, **I3D)
    assert out.shape == (3, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], 0.9375 * rows[1] + 0.0625 * rows[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[:, 4], 0.4375 * rows[13] + 0.5625 * rows[14], rtol=1e-6, atol=1e-6)
    # 5 s is 0.32 + 0.64 * 7.3125: between features 7 and 8.
    np.testing.assert_allclose(out[:, 2], 0.6875 * rows[7] + 0.3125 * rows[8], rtol=1e-6, atol=1e-6)


def test_edges_are_clamped_and_a_single_feature_is_constant():
    rows = np.array([[1.0, -2.0], [3.0, 4.0]])
    # feature centres 0.32 s and 0.96 s; a 40 s video's snippet centres (5, 15, 25, 35 s) all lie after the last
    out = resample_features(rows, 4, 40.0, **I3D)
    np.testing.assert_array_equal(out, np.repeat(rows[1][:, None], 4, axis=1))
    early = resample_features(rows, 2, 0.2, **I3D)  # centres 0.05 s and 0.15 s: before the first feature
    np.testing.assert_array_equal(early, np.repeat(rows[0][:, None], 2, axis=1))
    single = resample_features(rows[:1], 7, 3.0, **I3D)
    np.testing.assert_array_equal(single, np.repeat(rows[0][:, None], 7, axis=1))


@settings(deadline=None, max_examples=40)
@given(num_features=st.integers(2, 60), num_snippets=st.integers(1, 80), fps=st.floats(5, 60),
       stride=st.integers(1, 32), window=st.integers(1, 64), duration=st.floats(0.5, 200),
       slope=st.floats(-3, 3), offset=st.floats(-5, 5))
def test_linear_signals_are_resampled_exactly(num_features, num_snippets, fps, stride, window, duration, slope,
                                              offset):
    times = feature_times(num_features, fps, stride, window)
    rows = np.stack([slope * times + offset, -times, np.full_like(times, 2.0)], axis=1)  # (T_i, 3)
    out = resample_features(rows, num_snippets, duration, fps, stride, window)
    clamped = np.clip(snippet_times(num_snippets, duration), times[0], times[-1])
    scale = 1 + np.abs(rows).max()
    np.testing.assert_allclose(out[0], slope * clamped + offset, atol=1e-5 * scale)
    np.testing.assert_allclose(out[1], -clamped, atol=1e-5 * scale)
    np.testing.assert_allclose(out[2], 2.0, atol=1e-6)


@settings(deadline=None, max_examples=30)
@given(num_features=st.integers(1, 40), num_snippets=st.integers(1, 50), fps=st.floats(1, 60),
       stride=st.floats(0.5, 32), window=st.floats(0.5, 64), duration=st.floats(0.1, 300), seed=st.integers(0, 99))
def test_matches_np_interp_on_every_channel(num_features, num_snippets, fps, stride, window, duration, seed):
    rows = np.random.default_rng(seed).normal(size=(num_features, 4))
    out = resample_features(rows, num_snippets, duration, fps, stride, window)
    times, targets = feature_times(num_features, fps, stride, window), snippet_times(num_snippets, duration)
    for channel in range(4):
        np.testing.assert_allclose(out[channel], np.interp(targets, times, rows[:, channel]), atol=1e-5)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"features": np.zeros(5)}, r"features must have shape \(T_i, C\)"),
    ({"features": np.zeros((0, 3))}, r"T_i >= 1, got shape \(0, 3\)"),
    ({"fps": 0}, "fps must be a positive number, got 0"),
    ({"stride": -1}, "stride must be a positive number"),
    ({"window": float("nan")}, "window must be a positive number"),
    ({"num_snippets": 0}, "num_snippets must be a positive int"),
    ({"duration": 0.0}, "duration must be a positive number"),
])
def test_resample_rejects_bad_arguments(kwargs, pattern):
    arguments = {"features": np.zeros((4, 3)), "num_snippets": 8, "duration": 5.0, **I3D, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        resample_features(**arguments)


# ---------------------------------------------------------------- FeatureDataset on files written here
GT = {
    "version": "VERSION 1.3",
    "database": {
        "v1": {"subset": "training", "duration": 10.0, "url": "u",
               "annotations": [{"segment": [1.0, 4.0], "label": "kick"}, {"segment": [5.0, 10.0], "label": "jump"}]},
        "v2": {"subset": "training", "duration": 20.0, "annotations": [{"segment": [2.0, 3.0], "label": "run"}]},
        "v3": {"subset": "validation", "duration": 5.0, "annotations": []},
    },
}
LENGTHS = {"v1": 15, "v2": 31, "v3": 7}


def write_features(folder, lengths=LENGTHS, channels=6, seed=0):
    rng = np.random.default_rng(seed)
    for video_id, length in lengths.items():
        np.save(folder / f"{video_id}.npy", rng.normal(size=(length, channels)).astype(np.float32))


def make_dataset(folder, ground_truth=GT, **kwargs):
    return FeatureDataset(folder, ground_truth, **{"num_snippets": 16, **I3D, **kwargs})


def test_dataset_items_follow_the_contract(tmp_path):
    write_features(tmp_path)
    np.save(tmp_path / "no_annotations.npy", np.zeros((3, 6)))  # a file without ground truth is ignored
    dataset = make_dataset(tmp_path)
    assert len(dataset) == 3 and dataset.video_ids == ["v1", "v2", "v3"]
    assert dataset.class_names == ["jump", "kick", "run"] and dataset.num_classes == 3 and dataset.feature_dim == 6
    item = dataset[0]
    assert set(item) == {"video_id", "features", "segments", "labels", "duration"}
    assert item["video_id"] == "v1" and item["duration"] == 10.0
    assert item["features"].shape == (6, 16) and item["features"].dtype == torch.float32
    # seconds * T / duration: [1, 4] s and [5, 10] s of a 10 s video at T = 16
    torch.testing.assert_close(item["segments"], torch.tensor([[1.6, 6.4], [8.0, 16.0]]))
    assert item["labels"].dtype == torch.int64 and item["labels"].tolist() == [1, 0]
    rows = np.load(tmp_path / "v1.npy")
    np.testing.assert_allclose(item["features"].numpy(), resample_features(rows, 16, 10.0, **I3D))
    empty = dataset[2]
    assert empty["segments"].shape == (0, 2) and empty["labels"].shape == (0,)


def test_subset_class_names_fps_dict_and_loaded_ground_truth(tmp_path):
    write_features(tmp_path)
    training = make_dataset(tmp_path, subset="training")
    assert training.video_ids == ["v1", "v2"]
    assert training.class_names == ["jump", "kick", "run"]  # from the whole ground truth: shared indices
    named = make_dataset(tmp_path, load_ground_truth(GT), subset="training", class_names=["run", "kick", "jump", "x"])
    assert named[0]["labels"].tolist() == [1, 2] and named.num_classes == 4
    with pytest.warns(UserWarning, match=r"in 1 of 2 video\(s\).*'v2': 31 features at fps 12\.5"):  # as it says
        per_video = make_dataset(tmp_path, subset="training", fps={"v1": 25, "v2": 12.5})
    rows = np.load(tmp_path / "v2.npy")
    np.testing.assert_allclose(per_video[1]["features"].numpy(), resample_features(rows, 16, 20.0, 12.5, 16, 16))
    with pytest.raises(ValueError, match=r"fps: 1 video\(s\) have no fps in the dict, e.g. \['v2'\]"):
        make_dataset(tmp_path, subset="training", fps={"v1": 25})
    with pytest.raises(ValueError, match=r"subset 'testing' has no videos.*\['training', 'validation'\]"):
        make_dataset(tmp_path, subset="testing")
    with pytest.raises(ValueError, match=r"video 'v1', field 'label': 'jump' is not in class_names"):
        make_dataset(tmp_path, class_names=["kick", "run"])


def test_all_missing_files_are_reported_together(tmp_path):
    database = {f"vid{i:02d}": {"subset": "training", "duration": 5.0, "annotations": []} for i in range(9)}
    write_features(tmp_path, {"vid00": 4, "vid04": 4})
    with pytest.raises(FileNotFoundError, match=r"7 of 9 feature files are missing.*'vid01.npy', 'vid02.npy', "
                                                r"'vid03.npy', 'vid05.npy', 'vid06.npy'\]$"):
        make_dataset(tmp_path, {"database": database})
    write_features(tmp_path, {f"v_vid{i:02d}": 4 for i in range(9)})
    with pytest.raises(FileNotFoundError, match="files named 'v_<video id>.npy' exist"):
        make_dataset(tmp_path, {"database": database})


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros(12), r"video 'v2': feature file '.*v2.npy' has shape \(12,\), expected \(T_i >= 1, C = 6"),
    (np.zeros((3, 4, 6)), r"video 'v2': feature file '.*v2.npy' has shape \(3, 4, 6\)"),
    (np.zeros((0, 6)), r"video 'v2': feature file '.*v2.npy' has shape \(0, 6\), expected \(T_i >= 1"),
    (np.zeros((9, 5)), (r"video 'v2': feature file '.*v2.npy' has shape \(9, 5\), expected \(T_i >= 1, C = 6, "
                        r"from the first file, video 'v1'\)")),
    (np.array([{"a": 1}] * 3, dtype=object), r"video 'v2': feature file '.*v2.npy' is not a readable numeric"),
    (np.array(["a", "b"]), r"video 'v2': feature file '.*v2.npy' has dtype <U1"),
])
def test_wrong_files_name_the_video_path_shape_and_expectation(tmp_path, bad, pattern):
    write_features(tmp_path)
    np.save(tmp_path / "v2.npy", bad, allow_pickle=True)
    with pytest.raises(ValueError, match=pattern):
        make_dataset(tmp_path)


def test_feature_dim_is_checked_against_every_file(tmp_path):
    write_features(tmp_path)
    with pytest.raises(ValueError, match=r"video 'v1': .* has shape \(15, 6\), expected \(T_i >= 1, C = 8, "
                                         r"from feature_dim\)"):
        make_dataset(tmp_path, feature_dim=8)
    assert make_dataset(tmp_path, feature_dim=6).feature_dim == 6


def test_non_finite_features_and_files_changed_later(tmp_path):
    write_features(tmp_path)
    dataset = make_dataset(tmp_path)
    rows = np.load(tmp_path / "v3.npy")
    rows[2, 1] = np.nan
    np.save(tmp_path / "v3.npy", rows)
    with pytest.raises(ValueError, match=r"video 'v3': feature file '.*v3.npy' holds NaN"):
        dataset[2]
    np.save(tmp_path / "v1.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"video 'v1': .* has shape \(4, 3\), expected \(T_i >= 1, C = 6\)"):
        dataset[0]


def test_zero_length_segments_are_dropped_with_a_counting_warning(tmp_path):
    write_features(tmp_path)
    ground_truth = copy.deepcopy(GT)
    annotations = ground_truth["database"]["v1"]["annotations"]
    annotations += [{"segment": [3.0, 3.0], "label": "run"}, {"segment": [0.0, 0.0], "label": "kick"}]
    with pytest.warns(AnnotationWarning, match="dropped 2 zero-length") as caught:
        dataset = make_dataset(tmp_path, ground_truth)
    assert len([w for w in caught if str(w.message).startswith("training targets:")]) == 1
    assert dataset[0]["labels"].tolist() == [1, 0] and dataset[0]["segments"].shape == (2, 2)


def test_targets_are_clipped_to_the_video_and_the_ground_truth_is_not(tmp_path):
    # Real files: an annotation ending past the duration (ActivityNet), one starting after it (THUMOS14).
    write_features(tmp_path)
    ground_truth = copy.deepcopy(GT)
    ground_truth["database"]["v1"]["annotations"] += [{"segment": [8.0, 10.5], "label": "run"},
                                                      {"segment": [10.2, 11.0], "label": "kick"},
                                                      {"segment": [-0.5, 2.0], "label": "jump"}]
    with pytest.warns(AnnotationWarning) as caught:
        dataset = make_dataset(tmp_path, ground_truth)
    targets = [str(w.message) for w in caught if str(w.message).startswith("training targets:")]
    assert len(targets) == 1 and "clipped 3 " in targets[0] and "dropped 1 " in targets[0]
    assert {Path(w.filename).name for w in caught} == {"test_features.py"}  # the caller's line
    # [8, 10] and [0, 2] s of a 10 s video at T = 16; [10.2, 11] became [10, 10] and was dropped
    torch.testing.assert_close(dataset[0]["segments"][2:], torch.tensor([[12.8, 16.0], [0.0, 3.2]]))
    assert dataset[0]["labels"].tolist() == [1, 0, 2, 0]
    np.testing.assert_array_equal(dataset.videos["v1"].segments[2:], [[8.0, 10.5], [10.2, 11.0], [-0.5, 2.0]])


def test_a_wrong_fps_stride_or_window_is_said_once(tmp_path):
    write_features(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right numbers: no warning
        make_dataset(tmp_path)
    # features extracted at 25 fps given as 12.5: every feature seems to cover twice the time
    with pytest.warns(UserWarning, match=r"features: in 3 of 3 video\(s\) the features end far from the video's "
                                         r"end \(e\.g\. video 'v1': 15 features at fps 12\.5, stride 16, window 16 "
                                         r"end at 19\.2 s, the video lasts 10 s\); check fps, stride and window"):
        make_dataset(tmp_path, fps=12.5)
    with pytest.warns(UserWarning, match=r"in 3 of 3 video\(s\).*15 features at fps 25, stride 4, window 16 end at "
                                         r"2\.88 s"):
        make_dataset(tmp_path, stride=4)


@pytest.mark.parametrize("video_id", ["../outside", "sub/v1", "..", "/etc/passwd", "a\\b", ""])
def test_video_ids_cannot_name_files_outside_the_feature_folder(tmp_path, video_id):
    features = tmp_path / "features"
    features.mkdir()
    write_features(features)
    np.save(tmp_path / "outside.npy", np.zeros((4, 6), np.float32))  # what '../outside' would read
    ground_truth = copy.deepcopy(GT)
    ground_truth["database"][video_id] = {"subset": "training", "duration": 5.0, "annotations": []}
    with pytest.raises(ValueError, match=r"1 video id\(s\) are not plain file names, e\.g\. \[.*\]; features are "
                                         r"read from feature_dir/<video id>\.npy"):
        make_dataset(features, ground_truth)


def test_dataloader_with_collate(tmp_path):
    write_features(tmp_path)
    loader = torch.utils.data.DataLoader(make_dataset(tmp_path), batch_size=3, collate_fn=collate_videos)
    batch = next(iter(loader))
    assert batch["video_ids"] == ["v1", "v2", "v3"]
    assert batch["features"].shape == (3, 6, 16) and batch["segments"].shape == (3, 2, 2)
    assert batch["labels"].tolist() == [[1, 0], [2, -1], [-1, -1]]
    torch.testing.assert_close(batch["segments"][1], torch.tensor([[1.6, 2.4], [0.0, 0.0]]))
    assert batch["durations"].dtype == torch.float64 and batch["durations"].tolist() == [10.0, 20.0, 5.0]


# ---------------------------------------------------------------- collate_videos
def item(video_id, count, channels=3, snippets=8, device="cpu"):
    segments = torch.arange(count * 2, dtype=torch.float32, device=device).reshape(count, 2)
    return {"video_id": video_id, "features": torch.ones(channels, snippets, device=device),
            "segments": segments, "labels": torch.arange(count, device=device), "duration": 12.5}


@settings(deadline=None, max_examples=20)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=6))
def test_collate_pads_to_the_longest(counts):
    items = [item(f"v{i}", count) for i, count in enumerate(counts)]
    batch = collate_videos(items)
    longest = max(counts)
    assert batch["features"].shape == (len(counts), 3, 8)
    assert batch["segments"].shape == (len(counts), longest, 2) and batch["labels"].shape == (len(counts), longest)
    for b, count in enumerate(counts):
        assert torch.equal(batch["segments"][b, :count], items[b]["segments"])
        assert (batch["segments"][b, count:] == 0).all() and (batch["labels"][b, count:] == -1).all()
        assert batch["labels"][b, :count].tolist() == list(range(count))
    assert batch["durations"].dtype == torch.float64


def test_collate_errors():
    with pytest.raises(ValueError, match="items disagree in channels C: video 'a' has features .* = \\(3, 8\\), "
                                         "video 'b' \\(items\\[1\\]\\) has \\(4, 8\\)"):
        collate_videos([item("a", 1), item("b", 1, channels=4)])
    with pytest.raises(ValueError, match="items disagree in snippets T: .* video 'c' \\(items\\[2\\]\\) has \\(3, 5\\)"):
        collate_videos([item("a", 1), item("b", 1), item("c", 1, snippets=5)])
    with pytest.raises(ValueError, match="non-empty list"):
        collate_videos([])
    bad = item("a", 1)
    del bad["labels"]
    with pytest.raises(ValueError, match=r"items\[0\] \(video 'a'\) lacks keys \['labels'\]"):
        collate_videos([bad])
    with pytest.raises(ValueError, match=r"video 'a'\): features must be a 2-D tensor \(C, T\), got \(3,\)"):
        collate_videos([{**item("a", 1), "features": torch.ones(3)}])
    with pytest.raises(ValueError, match=r"video 'a'\): expected segments \(N, 2\) and labels \(N,\)"):
        collate_videos([{**item("a", 2), "labels": torch.zeros(3, dtype=torch.int64)}])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_collate_on_cuda():
    batch = collate_videos([item("a", 2, device="cuda"), item("b", 0, device="cuda")])
    for key in ("features", "segments", "labels", "durations"):
        assert batch[key].device.type == "cuda"
    assert batch["labels"].tolist() == [[0, 1], [-1, -1]]
