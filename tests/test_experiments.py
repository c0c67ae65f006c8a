"""The experiment protocol: seeds, rows, mean ± sample std, tables, JSON round trips, and the baseline rows."""
import json
import math

import numpy as np
import pytest

from tadlab.eval import ANET_TIOU
from tadlab.experiments import (BASELINE_ROWS, SeedRuns, baseline_rows, load_runs, results_table, run_seeds,
                                save_runs)


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
