"""The experiment protocol: the standard worlds, seeds, rows, mean ± sample std, paired differences, the evaluation's
sampling error, tables, JSON round trips, and the baseline rows."""
import json
import math

import numpy as np
import pytest

from tadlab.eval import ANET_TIOU
from tadlab.experiments import (BASELINE_ROWS, SeedRuns, baseline_rows, bootstrap_error, load_runs, paired_difference,
                                paired_table, results_table, run_seeds, save_runs, standard_world)


def recipe(seed):
    return {"A": {"average_mAP": 0.1 * seed, "mAP": [0.1, 0.2]}, "B": {"average_mAP": np.float32(0.5)}}


def test_run_seeds_gathers_rows_in_order_with_sample_std():
    rows = run_seeds(recipe, [1, 2, 3])
    assert list(rows) == ["A", "B"]
    a = rows["A"]
    assert a.seeds == [1, 2, 3] and a.subset == "testing"
    np.testing.assert_allclose(a.values(), [0.1, 0.2, 0.3])
    assert a.mean() == pytest.approx(0.2) and a.std() == pytest.approx(0.1)  # ddof = 1
    assert a.summary() == "0.200 ± 0.100"
    assert all(m["seconds"] >= 0 for m in a.metrics)
    assert isinstance(rows["B"].metrics[0]["average_mAP"], float)  # numpy scalars stored as floats


def test_a_single_seed_has_no_std():
    row = run_seeds(recipe, [2])["A"]
    assert math.isnan(row.std()) and row.summary() == "0.200"


def test_table_shows_mean_std_and_per_seed_values():
    table = results_table(run_seeds(recipe, [1, 2]).values())
    lines = table.splitlines()
    assert "average_mAP" in lines[0] and "per seed" in lines[0]
    assert lines[1].startswith("A") and "0.150 ± 0.071" in lines[1] and "(1: 0.100, 2: 0.200)" in lines[1]
    assert lines[-1].endswith("subset: testing")


def test_json_round_trip_keeps_rows_and_meta(tmp_path):
    rows = run_seeds(recipe, [0, 1], configs={"A": {"epochs": 3}})
    path = save_runs(tmp_path / "r.json", rows.values(), notebook="04", profile="full")
    assert json.loads(path.read_text())["subset"] == "testing"
    loaded = load_runs(path)
    assert list(loaded) == ["A", "B"] and loaded.meta["notebook"] == "04" and loaded.meta["profile"] == "full"
    assert loaded["A"].config == {"epochs": 3} and loaded["A"].metrics == rows["A"].metrics
    with pytest.raises(FileExistsError, match="overwrite"):
        save_runs(path, rows.values())
    save_runs(path, rows.values(), overwrite=True)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        run_seeds(recipe, [])
    with pytest.raises(TypeError, match="row name"):
        run_seeds(lambda seed: {"average_mAP": 0.3}, [0])
    with pytest.raises(ValueError, match="rows"):
        run_seeds(lambda seed: {f"row{seed}": {"average_mAP": 0.1}}, [0, 1])
    with pytest.raises(ValueError, match="subset"):
        SeedRuns("x", [0], [{}], subset="test")
    with pytest.raises(KeyError, match="no metric 'recall'"):
        run_seeds(recipe, [0])["A"].values("recall")
    with pytest.raises(FileNotFoundError, match="profile='full'"):
        load_runs(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="save_runs"):
        load_runs(tmp_path / "bad.json")


def test_baseline_rows_train_and_measure_three_rows_on_testing():
    from tadlab.data.synthetic import make_world

    world = make_world("anet", 30, seed=0, num_snippets=32, feature_dim=8, num_classes=3)
    rows = baseline_rows(world, ANET_TIOU, seed=0, epochs=2, device="cpu")
    assert tuple(rows) == BASELINE_ROWS
    for metrics in rows.values():
        assert metrics["subset"] == "testing" and len(metrics["mAP"]) == 10
        assert 0.0 <= metrics["average_mAP"] <= 1.0


def row(name, values, seeds=None, subset="testing"):
    seeds = list(range(len(values))) if seeds is None else seeds
    return SeedRuns(name, seeds, [{"average_mAP": v} for v in values], subset)


def test_paired_difference_on_hand_made_seeds():
    # differences 0.1, 0.2, 0.0, 0.1, 0.1: mean 0.1, sample std sqrt(0.005), t(0.975, 4) = 2.7764451
    a, b = row("A", [0.5, 0.6, 0.3, 0.4, 0.9]), row("B", [0.4, 0.4, 0.3, 0.3, 0.8])
    d = paired_difference(a, b)
    np.testing.assert_allclose(d.differences, [0.1, 0.2, 0.0, 0.1, 0.1], atol=1e-12)
    half = 2.7764451 * math.sqrt(0.005) / math.sqrt(5)
    assert d.mean == pytest.approx(0.1) and d.interval == pytest.approx((0.1 - half, 0.1 + half), abs=1e-6)
    assert d.wins == 4  # seed 2 is a tie, not a win
    assert str(d) == "A - B: +0.100 [+0.012, +0.188] (95% interval), higher on 4 of 5 seeds"


def test_paired_difference_aligns_seeds_and_refuses_other_seeds_or_subsets():
    a, b = row("A", [0.5, 0.7], seeds=[3, 1]), row("B", [0.1, 0.4], seeds=[1, 3])
    assert paired_difference(a, b).differences.tolist() == pytest.approx([0.7 - 0.1, 0.5 - 0.4])
    assert math.isnan(paired_difference(row("A", [0.5]), row("B", [0.4])).interval[0])
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference(row("A", [0.5, 0.6]), row("B", [0.5, 0.6], seeds=[0, 2]))
    with pytest.raises(ValueError, match="different subsets"):
        paired_difference(row("A", [0.5, 0.6]), row("B", [0.5, 0.6], subset="validation"))


def test_paired_table_lists_each_row_against_the_reference():
    table = paired_table([row("A", [0.5, 0.6, 0.3]), row("B", [0.4, 0.4, 0.3])], row("B", [0.4, 0.4, 0.3]))
    lines = table.splitlines()
    assert lines[1].startswith("B ") and lines[2].startswith("A ") and len(lines) == 3
    assert lines[2].endswith("2 of 3 seeds") and "+0.100" in lines[2]


def test_bootstrap_error_is_zero_for_perfect_results_and_shrinks_with_more_videos():
    def world(videos, hit_every):
        gt = {"database": {f"v{i}": {"subset": "testing", "duration": 10.0,
                                     "annotations": [{"segment": [1.0, 5.0], "label": "a"}]} for i in range(videos)}}
        res = {"results": {f"v{i}": [{"segment": [1.0, 5.0] if i % hit_every == 0 else [6.0, 9.0], "label": "a",
                                      "score": 0.9 if i % 2 else 0.5}] for i in range(videos)}}
        return gt, res

    assert bootstrap_error(*world(20, 1), ANET_TIOU, samples=20) == 0.0
    small, large = (bootstrap_error(*world(n, 2), ANET_TIOU, samples=60) for n in (20, 320))
    assert 0 < large < small / 2  # about 1 / sqrt(16) of it
    with pytest.raises(ValueError, match="no video of subset"):
        bootstrap_error(*world(4, 1), ANET_TIOU, subset="validation")


def test_standard_world_splits_and_more_training_videos():
    world = standard_world("anet", "ci", 0)
    assert [len(world.dataset(s)) for s in ("training", "validation", "testing")] == [90, 30, 30]
    bigger = standard_world("anet", "ci", 0, training_factor=3)
    assert [len(bigger.dataset(s)) for s in ("training", "validation", "testing")] == [270, 30, 30]
    with pytest.raises(ValueError, match="training_factor"):
        standard_world("anet", "ci", 0, training_factor=0)
    with pytest.raises(ValueError, match="testing_fraction"):
        standard_world("anet", "ci", 0, testing_fraction=0.5)
