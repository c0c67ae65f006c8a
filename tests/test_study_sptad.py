"""Notebook 05's study: SP-TAD's headline job at "smoke" (both rows from one model, seed 0's model exported and
rebuildable with its check metric), its results file pairing with notebook 01's baselines, and a wrong job refused."""
import json

import pytest
import torch

import tadlab.pretrained as pretrained
from tadlab.eval import THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, standard_world
from tadlab.studies import find_result, merge, part_path, plan, run_job, sptad


def test_the_headline_pairs_with_notebook_01s_worlds_and_seeds():
    result = find_result("sptad", "thumos")
    baselines = dict((r.name, r) for _, r in plan("full"))["01_baselines.json"]
    assert result.name == "05_headline.json" and result.jobs == ("thumos",) and result.subset == "testing"
    assert set(result.seeds) <= set(baselines.seeds) and len(result.seeds) >= len(ABLATION_SEEDS)
    assert result.meta["pairs_with"] == "01_baselines.json" and result.meta["model"]["num_stages"] == 4
    assert result.meta["model"]["num_proposals"] == 30 and result.meta["epochs"] == 60


def test_a_smoke_job_measures_one_model_twice_and_exports_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    part = json.loads(run_job("sptad", "thumos", 0, "smoke").read_text())
    assert list(part["rows"]) == [sptad.ROW, sptad.SOFT_NMS_ROW] and part["seconds"] < 120
    for metrics in part["rows"].values():
        assert len(metrics["mAP"]) == len(THUMOS_TIOU) and 0 <= metrics["average_mAP"] <= 1
        assert 0 <= metrics["duplicates"] <= 1 and metrics["epochs"] == 1
    entry = part["meta"]["pretrained"][0]
    assert (entry["name"], entry["preset"], entry["seed"]) == ("sptad", "thumos", 0) and entry["detect"] == {}
    assert entry["metrics"]["average_mAP"] == part["rows"][sptad.ROW]["average_mAP"]
    model = pretrained.build(entry)
    folder = part_path("smoke", "sptad", "thumos", 0).parent / "seed0-models"
    model.load_state_dict(torch.load(folder / entry["file"]))
    check = pretrained.check_metrics(model, standard_world("thumos", "smoke", 0), THUMOS_TIOU)
    assert check["average_mAP"] == pytest.approx(entry["metrics"]["check"]["average_mAP"], abs=1e-6)
    merged = json.loads(merge("sptad", "05_headline.json", "smoke").read_text())
    assert [run["name"] for run in merged["runs"]] == [sptad.ROW, sptad.SOFT_NMS_ROW]


def test_an_unknown_job_is_refused():
    with pytest.raises(ValueError, match="unknown job"):
        sptad.run("anet", 0, "smoke")


def test_paired_rows_restrict_notebook_01s_rows_to_the_headlines_seeds():
    from tadlab.experiments import SeedRuns, paired_difference

    baselines = {f"thumos: {name}": SeedRuns(f"thumos: {name}", [0, 1, 2, 3, 4],
                                             [{"average_mAP": 0.1 * k + s} for s in range(5)])
                 for k, name in enumerate(sptad.BASELINES)}
    headline = {name: SeedRuns(name, [2, 0, 1], [{"average_mAP": v} for v in (0.5, 0.3, 0.4)])
                for name in (sptad.ROW, sptad.SOFT_NMS_ROW)}
    rows = sptad.paired_rows(headline, baselines)
    assert list(rows) == [*sptad.BASELINES, sptad.ROW, sptad.SOFT_NMS_ROW]
    assert rows["context"].seeds == [2, 0, 1] and rows["context"].values().tolist() == pytest.approx([2.1, 0.1, 1.1])
    assert paired_difference(rows[sptad.ROW], rows["naive"]).seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="has no seeds"):
        sptad.paired_rows({name: SeedRuns(name, [7], [{"average_mAP": 0.1}]) for name in headline}, baselines)


def test_the_windowed_job_trains_on_windows_and_measures_whole_testing_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    result = find_result("sptad", sptad.WINDOWS_JOB)
    assert result.name == "05_windows.json" and result.seeds == sptad.SEEDS
    assert result.meta["windows"] == sptad.WINDOWS and result.meta["model"]["center_features"] is False
    part = json.loads(run_job("sptad", sptad.WINDOWS_JOB, 0, "smoke").read_text())
    assert list(part["rows"]) == [sptad.WINDOW_ROW, sptad.WINDOW_NO_ACTION_ROW]
    world = standard_world("thumos", "smoke", 0)
    for metrics in part["rows"].values():
        assert len(metrics["mAP"]) == len(THUMOS_TIOU) and 0 <= metrics["average_mAP"] <= 1
        assert metrics["subset"] == "testing" and metrics["epochs"] == 1 and metrics["final_loss"] > 0
    assert sum(part["rows"][sptad.WINDOW_ROW]["duration"]["count"]) == sum(
        len(item["labels"]) for item in world.dataset("testing"))


def test_the_window_recipe_grid_takes_in_the_papers_recipe_and_runs_on_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    result = find_result("sptad", sptad.AS_PRINTED_JOB)
    assert result.name == "05_window_recipe.json" and result.subset == "validation" and len(result.seeds) >= 2
    assert result.jobs == ("windows_lr0.0001", "windows_lr0.0003", "windows_lr0.001", "windows_lr0.003",
                           sptad.AS_PRINTED_JOB)
    assert sptad.WINDOW_LR["full"] in sptad.WINDOW_RECIPE_LRS and 1e-4 in sptad.WINDOW_RECIPE_LRS
    grid = sptad.window_recipe("windows_lr0.0003", "full")
    assert grid == {"epochs": 20, "lr": 3e-4, "batch_size": 8, "weight_decay": 1e-4, "clip_grad_norm": 1.0,
                    "warmup_epochs": 1}
    printed = sptad.window_recipe(sptad.AS_PRINTED_JOB, "full")
    assert (printed["epochs"], printed["step_epoch"], printed["lr"], printed["batch_size"]) == (16, 12, 1e-4, 16)
    assert "warmup_epochs" not in printed and "clip_grad_norm" not in printed
    with pytest.raises(ValueError, match="not a job of 05_window_recipe.json"):
        sptad.window_recipe("windows_lr0.5", "full")
    part = json.loads(run_job("sptad", sptad.AS_PRINTED_JOB, 0, "smoke").read_text())
    (row, metrics), = part["rows"].items()
    assert row == sptad.AS_PRINTED_ROW and metrics["subset"] == "validation"
    assert metrics["epochs"] == 2 and len(metrics["loss_per_epoch"]) == 2
    assert metrics["final_loss"] == metrics["loss_per_epoch"][-1] > 0


def test_the_chosen_window_lr_is_the_best_mean_and_the_lower_rate_on_a_tie():
    from tadlab.experiments import SeedRuns

    means = {1e-4: 0.10, 3e-4: 0.20, 1e-3: 0.20, 3e-3: 0.05}
    stored = {sptad.window_recipe_row(lr): SeedRuns(sptad.window_recipe_row(lr), [0, 1],
                                                    [{"average_mAP": m - 0.01}, {"average_mAP": m + 0.01}])
              for lr, m in means.items()}
    assert sptad.chosen_window_lr(stored) == 3e-4
    stored[sptad.window_recipe_row(1e-3)] = SeedRuns("x", [0, 1], [{"average_mAP": 0.3}, {"average_mAP": 0.2}])
    assert sptad.chosen_window_lr(stored) == 1e-3


def test_the_followup_extends_the_grid_and_splits_the_papers_training_stride_from_its_steps(tmp_path, monkeypatch):
    from tadlab.experiments import SeedRuns

    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    result = find_result("sptad", "windows_stride4")
    assert result.name == "05_window_followup.json" and result.subset == "validation"
    assert result.seeds == sptad.WINDOW_RECIPE_SEEDS
    assert result.jobs == ("windows_lr0.01", "windows_stride4", "windows_stride4_half_epochs", "windows_twice_epochs")
    assert sptad.window_recipe("windows_lr0.01", "full")["lr"] == 1e-2
    full, half, twice = (sptad.window_recipe(job, "full") for job in sptad.STRIDE_JOBS)
    assert (full["epochs"], half["epochs"], twice["epochs"]) == (20, 10, 40)
    assert full["lr"] == half["lr"] == twice["lr"] == sptad.WINDOW_LR["full"]
    # the rule takes in the follow-up's rate when its rows are given, and needs the first grid's
    means = {1e-4: 0.1, 3e-4: 0.2, 1e-3: 0.3, 3e-3: 0.4}
    stored = {sptad.window_recipe_row(lr): SeedRuns("x", [0, 1], [{"average_mAP": m}] * 2) for lr, m in means.items()}
    assert sptad.chosen_window_lr(stored) == 3e-3
    stored[sptad.window_recipe_row(1e-2)] = SeedRuns("x", [0, 1], [{"average_mAP": 0.5}] * 2)
    assert sptad.chosen_window_lr(stored) == 1e-2
    del stored[sptad.window_recipe_row(1e-4)]
    with pytest.raises(KeyError, match="0.0001"):
        sptad.chosen_window_lr(stored)
    # at smoke both stride rows train one epoch, on twice the windows of the headline's stride
    part = json.loads(run_job("sptad", "windows_stride4", 0, "smoke").read_text())
    (row, metrics), = part["rows"].items()
    assert row == "SP-TAD (windows), training stride 4" and metrics["train_stride"] == 4
    world = standard_world("thumos", "smoke", 0)
    headline_windows = len(sptad.subset_windows(world, "training", sptad.WINDOWS["train_stride"]))
    assert 1.8 * headline_windows <= metrics["training_windows"] <= 2.2 * headline_windows
    assert metrics["steps"] == metrics["epochs"] * -(-metrics["training_windows"] // 8)


def test_the_whole_video_recipe_is_chosen_on_validation_by_the_workflow(monkeypatch, tmp_path):
    from tadlab.experiments import SeedRuns
    from tadlab.studies import find_result
    from tadlab.studies import sptad

    result = find_result("sptad", "whole_lr0.001")
    assert result.name == "05_recipe_validation.json" and result.subset == "validation"
    assert result.jobs == ("whole_lr0.001", "whole_lr0.003") and len(result.seeds) >= 2
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    [(name, row)] = sptad.run("whole_lr0.001", 0, "smoke").items()
    assert name == "SP-TAD, lr 0.001" and row["subset"] == "validation" and row["lr"] == 1e-3
    assert len(row["loss_per_epoch"]) == row["epochs"] and row["final_loss"] == row["loss_per_epoch"][-1]
    stored = {sptad.whole_recipe_row(lr): SeedRuns(sptad.whole_recipe_row(lr), [0, 1],
                                                   [{"average_mAP": v} for v in values], "validation")
              for lr, values in ((1e-3, (0.2, 0.4)), (3e-3, (0.35, 0.2)))}
    assert sptad.chosen_whole_lr(stored) == 1e-3  # mean 0.30 against 0.275


def test_the_variant_jobs_change_one_thing_and_pair_with_the_headline(monkeypatch, tmp_path):
    import dataclasses

    from tadlab.models.sptad import SPTADConfig
    from tadlab.sptad_study import MODEL, VARIANTS

    headline = find_result("sptad", "thumos")
    for job, name in (("S=1", "05_stages.json"), ("pyramid_last", "05_variants.json")):
        result = find_result("sptad", job)
        assert result.name == name and result.meta["pairs_with"] == "05_headline.json"
        assert set(result.seeds) <= set(headline.seeds) and len(result.seeds) >= 3
    # each variant changes one thing: one keyword of the headline's model, or the number of epochs
    defaults = {field.name: field.default for field in dataclasses.fields(SPTADConfig)}
    for change in VARIANTS.values():
        [(key, value)] = change.items()
        assert value != 1 if key == "epoch_factor" else value != MODEL.get(key, defaults[key])
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    rows = sptad.run("one-to-many", 0, "smoke")
    assert list(rows) == ["one-to-many", "one-to-many + Soft-NMS"]
    assert rows["one-to-many + Soft-NMS"]["duplicates"] <= rows["one-to-many"]["duplicates"]
    for metrics in rows.values():
        assert 0 <= metrics["average_mAP"] <= 1 and metrics["epochs"] == 1 and sum(metrics["duration"]["count"]) > 0


def test_ablation_rows_put_the_headline_at_s4_on_the_sweeps_seeds():
    from tadlab.experiments import SeedRuns, paired_difference

    headline = {name: SeedRuns(name, [0, 1, 2, 3, 4], [{"average_mAP": 0.1 * s} for s in range(5)])
                for name in (sptad.ROW, sptad.SOFT_NMS_ROW)}
    stages = {"S=1": SeedRuns("S=1", [0, 1, 2], [{"average_mAP": v} for v in (0.05, 0.0, 0.3)])}
    variants = {"N=10": SeedRuns("N=10", [2, 1, 0], [{"average_mAP": v} for v in (0.1, 0.1, 0.1)])}
    rows = sptad.ablation_rows(headline, stages, variants)
    assert list(rows) == ["S=4", "S=4 + Soft-NMS", "S=1", "N=10"]
    assert rows["S=4"].seeds == [0, 1, 2] and rows["S=4"].values().tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert paired_difference(rows["S=1"], rows["S=4"]).wins == 2
    with pytest.raises(ValueError, match="other seeds"):
        sptad.ablation_rows(headline, stages, {"N=60": SeedRuns("N=60", [0, 1], [{"average_mAP": 0.1}] * 2)})


def test_ablation_rows_give_the_soft_nms_row_its_models_diagnosis():
    from tadlab.experiments import SeedRuns

    headline = {sptad.ROW: SeedRuns(sptad.ROW, [0], [{"average_mAP": 0.2, "localised": 0.5}]),
                sptad.SOFT_NMS_ROW: SeedRuns(sptad.SOFT_NMS_ROW, [0], [{"average_mAP": 0.3}])}
    stages = {"S=1": SeedRuns("S=1", [0], [{"average_mAP": 0.1, "localised": 0.2}])}
    rows = sptad.ablation_rows(headline, stages, {})
    assert rows["S=4 + Soft-NMS"].metrics == [{"localised": 0.5, "average_mAP": 0.3}]
    assert headline[sptad.SOFT_NMS_ROW].metrics == [{"average_mAP": 0.3}]  # the loaded rows are not changed
