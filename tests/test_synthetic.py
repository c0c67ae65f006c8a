"""The synthetic TAD world: determinism, shapes, presets, overrides, errors and its ActivityNet ground truth."""
import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.data.collate import collate_videos
from tadlab.data.schema import class_names_of, load_ground_truth
from tadlab.data.synthetic import PRESETS, make_world


def _stack(world, key):
    return [item[key] for item in world.videos]


def test_same_seed_gives_identical_world():
    a, b = make_world("thumos", 20, seed=3), make_world("thumos", 20, seed=3)
    for x, y in zip(a.videos, b.videos):
        assert x["video_id"] == y["video_id"] and x["duration"] == y["duration"]
        assert torch.equal(x["features"], y["features"])
        assert torch.equal(x["segments"], y["segments"]) and torch.equal(x["labels"], y["labels"])
    assert json.dumps(a.ground_truth) == json.dumps(b.ground_truth)


def test_different_seeds_differ():
    a, b = make_world("anet", 10, seed=0), make_world("anet", 10, seed=1)
    assert not torch.equal(torch.stack(_stack(a, "features")), torch.stack(_stack(b, "features")))
    assert [v["segments"].tolist() for v in a.videos] != [v["segments"].tolist() for v in b.videos]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_shapes_and_items(preset):
    world = make_world(preset, 30, seed=0)
    config = PRESETS[preset]
    T, C, K = config.num_snippets, config.feature_dim, config.num_classes
    assert (world.num_snippets, world.feature_dim, world.num_classes) == (T, C, K)
    assert world.class_names == sorted(world.class_names) and len(world.class_names) == K
    assert len(world.videos) == 30 and len(set(world.video_ids())) == 30
    for item in world.videos:
        assert item["features"].shape == (C, T) and item["features"].dtype == torch.float32
        assert torch.isfinite(item["features"]).all()
        n = len(item["labels"])
        assert item["segments"].shape == (n, 2) and item["segments"].dtype == torch.float32
        assert item["labels"].dtype == torch.int64 and ((item["labels"] >= 0) & (item["labels"] < K)).all()
        assert config.num_instances[0] <= n <= config.num_instances[1]
        assert isinstance(item["duration"], float) and config.duration[0] <= item["duration"] <= config.duration[1]
    batch = collate_videos(world.videos[:4])
    assert batch["features"].shape == (4, C, T) and batch["labels"].shape[0] == 4


def test_preset_instance_statistics():
    thumos, anet = make_world("thumos", 200, seed=0), make_world("anet", 200, seed=0)
    t_len = torch.cat([v["segments"][:, 1] - v["segments"][:, 0] for v in thumos.videos])
    a_len = torch.cat([v["segments"][:, 1] - v["segments"][:, 0] for v in anet.videos]) / anet.num_snippets
    assert np.mean([len(v["labels"]) for v in thumos.videos]) > 5 > np.mean([len(v["labels"]) for v in anet.videos])
    # Lengths stay in the preset's range except when a crowded video is shrunk to fit.
    assert t_len.median() < 10 and (t_len <= 16 + 1e-3).all() and (t_len > 1).all()
    assert a_len.median() > 0.2 and (a_len <= 0.8 + 1e-3).all()


@settings(deadline=None, max_examples=20)
@given(preset=st.sampled_from(sorted(PRESETS)), seed=st.integers(0, 10_000), num_videos=st.integers(1, 12),
       num_snippets=st.integers(16, 160))
def test_segments_sorted_disjoint_within_video(preset, seed, num_videos, num_snippets):
    world = make_world(preset, num_videos, seed=seed, num_snippets=num_snippets)
    for item in world.videos:
        seg = item["segments"]
        assert (seg[:, 0] >= 0).all() and (seg[:, 1] <= num_snippets).all() and (seg[:, 0] < seg[:, 1]).all()
        assert (seg[1:, 0] >= seg[:-1, 1]).all()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_ground_truth_is_valid_activitynet_json(preset, tmp_path):
    world = make_world(preset, 40, seed=1)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(world.ground_truth))  # must survive a JSON round trip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to clip: every segment lies inside its video
        videos = load_ground_truth(path)
    assert list(videos) == world.video_ids()
    subsets = [v.subset for v in videos.values()]
    assert subsets.count("validation") == round(PRESETS[preset].validation_fraction * 40)
    assert set(subsets) == {"training", "validation"}
    assert world.video_ids("training") + world.video_ids("validation") == world.video_ids()
    assert class_names_of(videos) == world.class_names
    T = world.num_snippets
    for item in world.videos:
        gt = videos[item["video_id"]]
        assert gt.duration == item["duration"]
        assert list(gt.labels) == [world.class_names[k] for k in item["labels"].tolist()]
        # Items are the JSON's seconds converted to snippet units (snippet t covers [t, t+1) * d / T).
        np.testing.assert_allclose(item["segments"].numpy(), gt.segments * T / gt.duration, rtol=1e-6, atol=1e-4)
        assert np.all(np.round(gt.segments, 2) == gt.segments)


def test_datasets_split_by_subset():
    world = make_world("anet", 10, seed=0)
    train, val = world.dataset("training"), world.dataset("validation")
    assert len(train) + len(val) == 10 and len(val) == 3 and len(world.dataset()) == 10
    assert [item["video_id"] for item in val] == world.video_ids("validation")
    with pytest.raises(ValueError, match="subset"):
        world.dataset("test")


def test_overrides_shrink_the_world():
    world = make_world("thumos", 5, seed=0, num_snippets=32, feature_dim=8, num_classes=3, noise=0.0,
                       num_instances=(1, 2), validation_fraction=0.4)
    assert world.videos[0]["features"].shape == (8, 32)
    assert world.num_classes == 3 and world.class_names == ["action_00", "action_01", "action_02"]
    assert all(1 <= len(v["labels"]) <= 2 for v in world.videos)
    assert len(world.video_ids("validation")) == 2


def test_evidence_follows_the_annotations():
    """Without nuisances, features are strongest inside actions and nearly zero far from any event."""
    world = make_world("anet", 20, seed=0, noise=0.0, drift=0.0, offset=0.0, distractors=(0, 0), ramp=(1.0, 1.0))
    for item in world.videos:
        energy = item["features"].norm(dim=0)
        centres = torch.arange(world.num_snippets) + 0.5
        seg = item["segments"]
        inside = ((centres[:, None] >= seg[:, 0]) & (centres[:, None] < seg[:, 1])).any(1)
        far = ((centres[:, None] < seg[:, 0] - 8) | (centres[:, None] > seg[:, 1] + 8)).all(1)
        assert energy[inside].mean() > 0.4
        if far.any():
            assert energy[far].max() < 0.05


def test_noise_override_changes_only_the_noise_level():
    clean = make_world("thumos", 4, seed=0, noise=0.0)
    noisy = make_world("thumos", 4, seed=0, noise=1.0)
    assert [v["segments"].tolist() for v in clean.videos] == [v["segments"].tolist() for v in noisy.videos]
    diff = torch.stack(_stack(noisy, "features")) - torch.stack(_stack(clean, "features"))
    assert abs(diff.std().item() - 1.0) < 0.05


def test_unknown_preset_and_override_are_named():
    with pytest.raises(ValueError, match=r"preset.*\['anet', 'thumos'\].*'kinetics'"):
        make_world("kinetics")
    with pytest.raises(ValueError, match=r"unknown override.*'snippets'.*num_snippets"):
        make_world("thumos", 3, snippets=64)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_videos": 0}, ValueError, "num_videos"),
    ({"num_videos": 2.5}, ValueError, "num_videos"),
    ({"seed": -1}, ValueError, "seed"),
    ({"num_snippets": 0}, ValueError, "num_snippets"),
    ({"feature_dim": 3.0}, ValueError, "feature_dim"),
    ({"noise": -0.1}, ValueError, "noise"),
    ({"duration": 60.0}, TypeError, "duration"),
    ({"num_instances": (3, 1)}, ValueError, "num_instances"),
    ({"num_instances": (1.0, 2.0)}, TypeError, "num_instances"),
    ({"instance_length": (0.1, 1.5)}, ValueError, "instance_length"),
    ({"validation_fraction": 1.5}, ValueError, "validation_fraction"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_world("thumos", **{"num_videos": 3, **kwargs})
