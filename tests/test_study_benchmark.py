"""Notebook 08's study: the cost measurement of one family, and the learning rate chosen from validation rows."""
import pytest

from tadlab.experiments import SeedRuns, save_runs
from tadlab.studies import benchmark


def test_cost_measures_one_family_on_one_thread():
    cost = benchmark.cost("naive", "anet", "smoke", videos=3)
    assert cost["params"] > 0 and cost["gflops"] > 0 and cost["num_snippets"] == 100
    assert cost["train_cpu_s_per_epoch"] > 0 and cost["inference_cpu_ms_per_video"] > 0
    assert cost["training_videos"] == 9 and cost["peak_train_mb"] >= 0


def test_the_learning_rate_with_the_best_validation_mAP_is_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    rows = [SeedRuns(f"bmn, thumos, lr {lr:g}", [0], [{"average_mAP": value}], "validation")
            for lr, value in ((1e-3, 0.2), (3e-3, 0.3))]
    save_runs(tmp_path / "results-smoke" / "08_recipe_validation.json", rows)
    assert benchmark.chosen_lr("bmn", "thumos", "smoke") == 3e-3
    with pytest.raises(ValueError, match="unknown family"):
        benchmark.build("gsmt-x", None)
