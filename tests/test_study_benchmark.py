"""Notebook 08's study: the cost measurement of one family, the learning rate chosen from validation rows, and the
jobs that name the family and preset they run."""
import pytest

from tadlab.experiments import SeedRuns, on_seeds, save_runs
from tadlab.studies import benchmark


def test_cost_measures_one_family_on_one_thread():
    cost = benchmark.cost("naive", "anet", "smoke", videos=3)
    assert cost["params"] > 0 and cost["gflops"] > 0 and cost["num_snippets"] == 100
    assert cost["train_cpu_s_per_epoch"] > 0 and cost["inference_cpu_ms_per_video"] > 0
    assert cost["training_items"] == 9 and cost["peak_train_mb"] >= 0


def test_sptad_costs_its_clips_on_thumos():
    """On thumos SP-TAD runs on 32-snippet clips: the forward covers every clip of a video, the epoch the clips."""
    clips = benchmark.cost("sptad", "thumos", "smoke", videos=1)
    whole = benchmark.cost("sptad", "anet", "smoke", videos=1)
    assert clips["params"] == whole["params"]
    assert clips["training_items"] > 9  # 256 snippets at stride 8: many clips per training video
    assert clips["gflops"] > whole["gflops"]


def test_the_learning_rate_with_the_best_validation_mAP_is_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    rows = [SeedRuns(benchmark.recipe_row("actionformer", "thumos", lr), [0], [{"average_mAP": value}], "validation")
            for lr, value in ((1e-3, 0.3), (3e-3, 0.2))]
    save_runs(tmp_path / "results-smoke" / "08_recipe_validation.json", rows)
    assert benchmark.chosen_lr("actionformer", "thumos", "smoke") == 1e-3
    with pytest.raises(ValueError, match="unknown family"):
        benchmark.build("gsmt-x", None)


def test_every_job_names_a_family_and_a_preset():
    for result in benchmark.RESULTS:
        for job in result.jobs:
            family, preset = job.removeprefix("cost_").split("_lr")[0].rsplit("_", 1)
            assert family in benchmark.COST_FAMILIES and preset in benchmark.PRESETS, job
    with pytest.raises(ValueError, match="unknown job"):
        benchmark.run("segtad_kinetics", 0, "smoke")


def test_stored_rows_rename_each_familys_row_and_pair_over_shared_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    monkeypatch.setitem(benchmark.ROWS, "anet", {"naive": ("01_baselines.json", "anet: naive"),
                                                 "SegTAD": ("07_headline.json", "SegTAD")})
    folder = tmp_path / "results-smoke"
    save_runs(folder / "01_baselines.json", [SeedRuns("anet: naive", [0, 1, 2], [{"average_mAP": v} for v in
                                                                                   (0.1, 0.2, 0.3)])])
    save_runs(folder / "07_headline.json", [SeedRuns("SegTAD", [0, 1], [{"average_mAP": 0.5}, {"average_mAP": 0.4}])])
    rows = benchmark.stored_rows("anet", "smoke")
    assert list(rows) == ["naive", "SegTAD"] and rows["naive"].name == "naive"
    assert on_seeds(rows["naive"], rows["SegTAD"].seeds).values().tolist() == [0.1, 0.2]
    renamed = on_seeds(rows["naive"], [2, 0], name="baseline")
    assert renamed.name == "baseline" and renamed.seeds == [2, 0] and renamed.values().tolist() == [0.3, 0.1]
    assert rows["naive"].name == "naive"  # the stored row is left as it is
    with pytest.raises(ValueError, match="has no seeds"):
        on_seeds(rows["SegTAD"], [2])
    with pytest.raises(ValueError, match="preset must be one of"):
        benchmark.stored_rows("kinetics", "smoke")



def test_every_stored_row_of_the_table_exists_at_full():
    """The committed results hold every row notebook 08 reads, over the seeds its file declares."""
    for preset in benchmark.PRESETS:
        rows = benchmark.stored_rows(preset, "full")
        assert set(rows) == set(benchmark.ROWS[preset])
        assert all(len(row.seeds) >= 3 for row in rows.values())
