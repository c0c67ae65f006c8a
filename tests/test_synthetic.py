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
        assert n >= 1 and item["segments"].shape == (n, 2) and item["segments"].dtype == torch.float32
        assert item["labels"].dtype == torch.int64 and ((item["labels"] >= 0) & (item["labels"] < K)).all()
        low, high = config.duration_range
        assert isinstance(item["duration"], float) and low <= item["duration"] <= high
    batch = collate_videos(world.videos[:4])
    assert batch["features"].shape == (4, C, T) and batch["labels"].shape[0] == 4


# The real benchmarks' statistics (tadlab.data.statistics on the public annotation files, results/real_benchmarks.json)
# and the band each preset must lie in on 1,500 videos.
SHAPE = {
    "thumos": {"single_class_videos": (0.75, 0.95), "same_class_consecutive": (0.7, 0.95), "gap_median": (2.0, 4.5),
               "gap_under_1s": (0.1, 0.35), "gap_under_3s": (0.35, 0.6), "instances_per_video_mean": (11, 19),
               "instances_per_video_median": (7, 11), "length_fraction_median": (0.008, 0.016),
               "length_fraction_mean": (0.015, 0.03), "length_under_2pct": (0.6, 0.85), "length_over_80pct": (0, 0.01),
               "action_fraction": (0.24, 0.36), "overlapping_instances": (0.05, 0.25), "mean_duration": (170, 270)},
    "anet": {"single_class_videos": (0.98, 1.0), "same_class_consecutive": (0.98, 1.0), "gap_median": (6.0, 12.0),
             "gap_under_1s": (0.0, 0.06), "instances_per_video_mean": (1.35, 1.75), "instances_per_video_median": (1, 1),
             "length_fraction_median": (0.26, 0.4), "length_fraction_mean": (0.37, 0.5), "length_under_2pct": (0.02, 0.1),
             "length_over_80pct": (0.18, 0.32), "action_fraction": (0.58, 0.72), "overlapping_instances": (0.01, 0.04),
             "mean_duration": (95, 145)},
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_have_the_shape_of_the_real_benchmarks(preset):
    stats = make_world(preset, 1500, seed=0).statistics()
    outside = {key: round(stats[key], 4) for key, (low, high) in SHAPE[preset].items()
               if not low <= stats[key] <= high}
    assert not outside, f"{preset}: outside the real benchmark's shape: {outside}"
    share = stats["instances_per_video_share"]
    if preset == "anet":  # ActivityNet: 75 % one instance, 13 % two, 8 % 3-4, 3 % 5-8
        assert 0.7 < share["1"] < 0.8 and 0.09 < share["2"] < 0.17 and 0.05 < share["3-4"] < 0.11
    else:  # THUMOS14: about half the videos have more than 8 instances
        assert 0.4 < share[">8"] < 0.6


@settings(deadline=None, max_examples=20)
@given(preset=st.sampled_from(sorted(PRESETS)), seed=st.integers(0, 10_000), num_videos=st.integers(1, 12),
       num_snippets=st.integers(16, 160))
def test_instances_sorted_disjoint_and_at_least_min_length(preset, seed, num_videos, num_snippets):
    world = make_world(preset, num_videos, seed=seed, num_snippets=num_snippets, nested_classes=0, duplicates=0.0)
    for item in world.videos:
        seg = item["segments"]
        assert (seg[:, 0] >= 0).all() and (seg[:, 1] <= num_snippets + 1e-3).all() and (seg[:, 0] < seg[:, 1]).all()
        assert (seg[1:, 0] >= seg[:-1, 1] - 1e-3).all()  # two-decimal seconds move boundaries a hair
        tolerance = 0.011 * num_snippets / item["duration"]  # one rounding step of 0.01 s at each end
        assert (seg[:, 1] - seg[:, 0] >= PRESETS[preset].min_length - 2 * tolerance).all()


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
    assert subsets.count("testing") == round(PRESETS[preset].testing_fraction * 40)
    assert set(subsets) == {"training", "validation", "testing"}
    assert subsets == sorted(subsets, key=["training", "validation", "testing"].index)  # testing is the last videos
    assert world.video_ids("training") + world.video_ids("validation") + world.video_ids("testing") == \
        world.video_ids()
    used = sorted({world.class_names[k] for item in world.videos for k in item["labels"].tolist()})
    assert class_names_of(videos) == used  # a small world need not show every class
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
    train, val, test = world.dataset("training"), world.dataset("validation"), world.dataset("testing")
    assert (len(train), len(val), len(test)) == (6, 2, 2) and len(world.dataset()) == 10
    assert [item["video_id"] for item in test] == world.video_ids("testing")
    with pytest.raises(ValueError, match="subset"):
        world.dataset("test")


def test_overrides_shrink_the_world():
    world = make_world("thumos", 5, seed=0, num_snippets=32, feature_dim=8, num_classes=3, noise=0.0,
                       max_instances=2, validation_fraction=0.4, testing_fraction=0.2)
    assert world.videos[0]["features"].shape == (8, 32)
    assert world.num_classes == 3 and world.class_names == ["action_00", "action_01", "action_02"]
    # Two instances at most, each maybe annotated twice (one nested pair fits in three classes).
    assert all(1 <= len(v["labels"]) <= 4 for v in world.videos)
    assert len(world.video_ids("validation")) == 2 and len(world.video_ids("testing")) == 1


def _layout_world(**overrides):
    """An anet-sized world of 400 videos, as (counts, classes per video, instance segments per video)."""
    world = make_world("thumos", 400, seed=0, **overrides)
    return world, [len(v["labels"]) for v in world.videos], [set(v["labels"].tolist()) for v in world.videos]


def test_one_class_per_video_unless_a_second_class_is_asked_for():
    world, counts, classes = _layout_world(second_class=0.0, nested_classes=0)
    assert all(len(c) == 1 for c in classes)
    world, counts, classes = _layout_world(second_class=1.0, nested_classes=0, duplicates=0.0)
    assert all(len(c) == 2 for n, c in zip(counts, classes) if n >= 2)
    assert all(len(c) == 1 for n, c in zip(counts, classes) if n == 1)


def test_nested_classes_annotate_every_child_instance_twice():
    world = make_world("thumos", 200, seed=1, nested_classes=2, second_class=0.0, duplicates=0.0)
    children = 0
    for item in world.videos:
        labels, seg = item["labels"].tolist(), item["segments"]
        for i, label in enumerate(labels):
            if label in (0, 2):  # a child: its parent (label + 1) annotates the same segment
                children += 1
                twins = [j for j, other in enumerate(labels) if other == label + 1 and torch.equal(seg[j], seg[i])]
                assert twins, f"{item['video_id']}: child instance {i} has no parent annotation"
        assert 4 not in labels or 5 not in labels or len(set(labels)) > 1  # classes 4, 5 are not nested
    assert children > 0
    plain = make_world("thumos", 200, seed=1, nested_classes=0, second_class=0.0, duplicates=0.0)
    assert all(len(set(v["labels"].tolist())) == 1 for v in plain.videos)


def test_gaps_respect_min_gap_and_the_margin_weight_moves_background_out_of_them():
    def gaps(world):
        out = []
        for item in world.videos:
            seg = item["segments"].double()
            out.extend((seg[1:, 0] - seg[:-1, 1]).tolist())
        return np.array(out)

    base = dict(nested_classes=0, duplicates=0.0)
    tight = gaps(make_world("thumos", 300, seed=0, min_gap=3.0, **base))
    assert tight.min() >= 3.0 - 0.05
    wide = gaps(make_world("thumos", 300, seed=0, margin_weight=0.1, **base))
    narrow = gaps(make_world("thumos", 300, seed=0, margin_weight=30.0, **base))
    assert np.median(wide) > 1.5 * np.median(narrow)


def test_concentrations_set_how_much_lengths_and_gaps_vary_within_a_video():
    def spread(world, key):
        values = []
        for item in world.videos:
            seg = item["segments"].double()
            x = seg[:, 1] - seg[:, 0] if key == "length" else seg[1:, 0] - seg[:-1, 1]
            if len(x) >= 5:
                values.append(float(x.std() / x.mean()))
        return np.median(values)

    base = dict(nested_classes=0, duplicates=0.0, second_class=0.0, min_length=0.5, min_gap=0.0)
    even = make_world("thumos", 200, seed=0, length_concentration=50.0, gap_concentration=50.0, **base)
    varied = make_world("thumos", 200, seed=0, length_concentration=0.5, gap_concentration=0.5, **base)
    assert spread(even, "length") < 0.3 < 0.8 < spread(varied, "length")
    assert spread(even, "gap") < 0.3 < 0.8 < spread(varied, "gap")


def test_instance_counts_follow_the_log_normal_and_its_caps():
    counts = np.array([len(v["labels"]) for v in make_world("thumos", 600, seed=0, nested_classes=0, duplicates=0.0,
                                                               num_instances=(6.0, 0.5), max_instances=12).videos])
    assert 5 <= np.median(counts) <= 7 and counts.max() == 12 and counts.min() >= 1
    fits = make_world("thumos", 300, seed=0, nested_classes=0, duplicates=0.0, num_snippets=30, min_length=2.0,
                      min_gap=1.0, num_instances=(50.0, 0.1))
    assert max(len(v["labels"]) for v in fits.videos) == 10  # (30 + 1) // (2 + 1): what fits in 30 snippets


def test_action_fraction_and_whole_video_do_what_they_say():
    low = make_world("anet", 400, seed=0, action_fraction=(0.2, 20.0), whole_video=0.0).statistics()
    high = make_world("anet", 400, seed=0, action_fraction=(0.8, 20.0), whole_video=0.0).statistics()
    assert low["action_fraction"] < 0.3 < 0.7 < high["action_fraction"]
    whole = make_world("anet", 300, seed=0, whole_video=1.0)
    singles = [v for v in whole.videos if len(v["labels"]) == 1]
    assert singles and all(float(v["segments"][0, 1] - v["segments"][0, 0]) >= 0.8 * 100 - 0.1 for v in singles)


def test_longer_videos_hold_more_instances_when_asked():
    world = make_world("thumos", 600, seed=0, duration_count_exponent=0.5, duration=(100.0, 0.1))
    counts = np.array([len(v["labels"]) for v in world.videos])
    durations = np.array([v["duration"] for v in world.videos])
    assert np.corrcoef(np.log(counts), np.log(durations))[0, 1] > 0.8
    flat = make_world("thumos", 600, seed=0, duration_count_exponent=0.0, duration=(100.0, 0.1))
    assert np.std(np.log([v["duration"] for v in flat.videos])) < 0.12


def test_duplicates_overlap_their_instance_with_the_same_class():
    stats = make_world("anet", 1000, seed=0, duplicates=0.2).statistics()
    assert 0.25 < stats["overlapping_instances"] < 0.45 and stats["overlapping_same_class"] == 1.0
    assert make_world("anet", 300, seed=0, duplicates=0.0).statistics()["overlapping_instances"] == 0.0


def _clean(preset="anet", **overrides):
    return make_world(preset, 40, seed=0, noise=0.0, drift=0.0, offset=0.0, prototype_jitter=0.0,
                      gain=(1.0, 1.0), amplitude=(1.0, 1.0), ramp=(0.3, 0.3), **overrides)


def test_evidence_follows_the_annotations():
    """Without nuisances or hard negatives, features are strongest inside actions and zero far from them."""
    world = _clean(false_starts=(0, 0), distractors=(0, 0))
    for item in world.videos:
        energy = item["features"].norm(dim=0)
        centres = torch.arange(world.num_snippets) + 0.5
        seg = item["segments"]
        inside = ((centres[:, None] >= seg[:, 0]) & (centres[:, None] < seg[:, 1])).any(1)
        far = ((centres[:, None] < seg[:, 0] - 4) | (centres[:, None] > seg[:, 1] + 4)).all(1)
        assert energy[inside].mean() > 0.4
        if far.any():
            assert energy[far].max() < 1e-3


def test_onset_and_offset_look_alike_across_classes_and_the_core_does_not():
    world = _clean(phase=(0.3, 0.3), phase_amplitude=1.0, dropout=0.0, false_starts=(0, 0), distractors=(0, 0),
                   whole_video=1.0, num_instances=(0.5, 0.0))
    onsets, cores = [], []
    for item in world.videos:
        start, end = item["segments"][0].tolist()
        length = end - start
        onsets.append(item["features"][:, int(start + 0.1 * length)])
        cores.append(item["features"][:, int(start + 0.5 * length)])
    labels = [int(v["labels"][0]) for v in world.videos]
    pairs = [(i, j) for i in range(len(labels)) for j in range(i) if labels[i] != labels[j]]

    def cosine(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    onset_similarity = np.mean([cosine(onsets[i], onsets[j]) for i, j in pairs])
    core_similarity = np.mean([cosine(cores[i], cores[j]) for i, j in pairs])
    assert onset_similarity > 0.95 > 0.6 > core_similarity  # classes share only class_similarity in the core


def test_dropouts_dip_the_evidence_inside_an_instance():
    def dip_depth(world):
        depths = []
        for item in world.videos:
            start, end = item["segments"][0].tolist()
            energy = item["features"].norm(dim=0)[int(start) + 1:int(end) - 1]
            depths.append(float(energy.min() / energy.max()))
        return np.median(depths)

    kwargs = dict(phase_amplitude=1.0, false_starts=(0, 0), distractors=(0, 0), whole_video=1.0,
                  num_instances=(0.5, 0.0), dropout_length=(0.2, 0.2))
    # Without a dropout the energy only sags to ~0.7 where two phases hand over (half of each of two directions).
    assert dip_depth(_clean(dropout=1.0, **kwargs)) < 0.2 < 0.6 < dip_depth(_clean(dropout=0.0, **kwargs))


def test_hard_negatives_lie_outside_the_instances():
    world = _clean("thumos", false_starts=(4, 4), distractors=(4, 4))
    quiet = _clean("thumos", false_starts=(0, 0), distractors=(0, 0))
    present = 0
    for item, calm in zip(world.videos, quiet.videos):
        extra = (item["features"] - calm["features"]).norm(dim=0)
        centres = torch.arange(world.num_snippets) + 0.5
        seg = item["segments"]
        inside = ((centres[:, None] >= seg[:, 0]) & (centres[:, None] < seg[:, 1])).any(1)
        assert extra[inside].max() < 0.05  # a margin of 2 snippets keeps them off the instances
        present += bool(extra[~inside].max() > 0.3)
    assert present >= 0.8 * len(world.videos)  # and they are there, but in the most crowded videos


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
    ({"duration": (60.0, -1.0)}, ValueError, "duration"),
    ({"num_instances": (0.0, 1.0)}, ValueError, "num_instances"),
    ({"action_fraction": (1.5, 3.0)}, ValueError, "action_fraction"),
    ({"gap_concentration": 0.0}, ValueError, "gap_concentration"),
    ({"whole_video": 1.5}, ValueError, "whole_video"),
    ({"phase": (0.3, 0.6)}, ValueError, "phase"),
    ({"false_starts": (1.0, 2.0)}, TypeError, "false_starts"),
    ({"nested_classes": -1}, ValueError, "nested_classes"),
    ({"validation_fraction": 1.5}, ValueError, "validation_fraction"),
    ({"validation_fraction": 0.6, "testing_fraction": 0.6}, ValueError, "testing_fraction"),
    ({"min_length": 300.0}, ValueError, "min_length"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_world("thumos", **{"num_videos": 3, **kwargs})
