"""Notebook 01's study: the dropout-sensitivity jobs change the world's dropout knob and nothing else, run at smoke
and give the three baseline rows; the official-evaluation comparison writes files the official reader accepts and
stores both metrics with their largest difference."""
import json

import numpy as np
import pytest
import torch

import tadlab.studies.baselines as baselines
from tadlab.experiments import load_runs, standard_world
from tadlab.models import TemporalContextClassifier
from tadlab.studies import find_result, results_dir


def test_a_higher_dropout_share_adds_dropouts_to_the_same_videos_and_changes_nothing_else():
    worlds = {d: standard_world("anet", "smoke", 0, dropout=d) for d in (0.0, 0.5, 1.0)}
    default = standard_world("anet", "smoke", 0)
    assert worlds[0.5].config == default.config  # the preset's share is one of the settings
    for world in worlds.values():
        assert world.ground_truth == default.ground_truth  # same layout, durations, splits
    same = all(torch.equal(a["features"], b["features"]) for a, b in zip(worlds[0.5].videos, default.videos))
    differ = [not torch.equal(a["features"], b["features"]) for a, b in zip(worlds[0.0].videos, worlds[1.0].videos)]
    assert same and any(differ)
    assert 0.5 in baselines.DROPOUTS and baselines.DROPOUTS == tuple(sorted(baselines.DROPOUTS))
    assert find_result("baselines", baselines.dropout_job(0.5)).name == "01_dropout.json"


def test_a_dropout_job_runs_at_smoke_on_the_chosen_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    recipe_rows = [{"name": f"anet: {row}, lr {lr:g}, {baselines.epochs_at('smoke', epochs)} epochs", "seeds": [0],
                    "subset": "validation", "metrics": [{"average_mAP": 0.1 if lr == 3e-3 and epochs == 25 else 0.0}]}
                   for lr, epochs in baselines.RECIPES["anet"] for row in baselines.BASELINE_ROWS]
    results_dir("smoke").mkdir(parents=True)
    (results_dir("smoke") / "01_recipe_validation.json").write_text(json.dumps({"runs": recipe_rows}))
    assert baselines.chosen_recipe("anet", "smoke") == {"lr": 3e-3, "epochs": 2}
    rows = baselines.run(baselines.dropout_job(1.0), 0, "smoke")
    assert sorted(rows) == sorted(baselines.dropout_row(1.0, row) for row in baselines.BASELINE_ROWS)
    assert all(0 <= m["average_mAP"] <= 1 and len(m["mAP"]) == 10 for m in rows.values())


def _metrics(values):
    return {"average_mAP": float(np.mean(values)), "mAP": list(values), "tiou_thresholds": [0.5, 0.75]}


def test_the_official_comparison_stores_both_rows_and_the_largest_difference(tmp_path):
    path = baselines.save_official_comparison(
        tmp_path / "official.json", {"anet": {"tadlab": _metrics([0.4, 0.2]), "official": _metrics([0.4, 0.2 + 1e-9])}},
        repository="r", commit="c", file="f", command="cmd")
    rows = load_runs(path)
    assert list(rows) == ["anet: tadlab.eval", "anet: official eval_detection.py"]
    assert rows.meta["largest_difference"] == pytest.approx(1e-9) and rows.meta["command"] == "cmd"
    with pytest.raises(ValueError, match="2 thresholds in tadlab's metrics, 1 in the official"):
        baselines.save_official_comparison(tmp_path / "x.json",
                                           {"anet": {"tadlab": _metrics([0.4, 0.2]), "official": _metrics([0.4])}})
    with pytest.raises(ValueError, match="expected the metrics of 'tadlab' and 'official'"):
        baselines.save_official_comparison(tmp_path / "x.json", {"anet": {"tadlab": _metrics([0.4])}})


def test_official_eval_inputs_are_the_files_the_official_reader_expects(monkeypatch, tmp_path):
    """On a smoke world and an untrained model in place of the shipped one: every field the official
    ``ANETdetection`` checks, testing videos only, and tadlab's metrics of those very files."""
    import tadlab.pretrained as pretrained

    world = standard_world("thumos", "smoke", 0)
    torch.manual_seed(0)
    model = TemporalContextClassifier(world.feature_dim, world.num_classes).eval()
    monkeypatch.setattr(baselines, "standard_world", lambda preset, profile, seed: world)
    monkeypatch.setattr(pretrained, "load", lambda *args, **kwargs: model)
    monkeypatch.setattr(pretrained, "entry", lambda *args, **kwargs: {"detect": {"decoder": "runs"}})
    metrics = baselines.official_eval_inputs("thumos", tmp_path)
    truth = json.loads((tmp_path / "ground_truth_thumos.json").read_text())
    results = json.loads((tmp_path / "results_thumos.json").read_text())
    assert {"database", "taxonomy", "version"} <= set(truth) and {"results", "version", "external_data"} <= set(results)
    assert set(truth["database"]) == set(world.video_ids("testing")) >= set(results["results"])
    assert metrics["videos"] == len(world.video_ids("testing")) and len(metrics["mAP"]) == 5
    assert metrics["predictions"] == sum(len(v) for v in results["results"].values())
    with pytest.raises(ValueError, match="preset must be one of"):
        baselines.official_eval_inputs("charades", tmp_path)
