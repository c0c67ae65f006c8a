"""Notebook 04's recipe sweep and ablations as workflow jobs: each job returns its rows at smoke in seconds, the
recipe rule chooses within the epoch budget, and the ablation file pairs with the headline (same seeds)."""
import pytest

from tadlab.experiments import ABLATION_SEEDS, SeedRuns
from tadlab.studies import find_result, gsmt


def test_the_sweep_and_the_ablations_are_results_of_the_workflow():
    sweep = find_result("gsmt", "recipe_mask1_epochs50")
    assert sweep.name == "04_recipe_validation.json" and sweep.subset == "validation" and sweep.seeds == (0,)
    ablations = find_result("gsmt", "anet_readings")
    assert ablations.name == "04_ablations.json" and ablations.seeds == ABLATION_SEEDS
    assert set(ablations.jobs) == {*gsmt.ABLATIONS, "anet_readings"}


def test_sweep_epochs_scale_with_the_profile():
    assert [gsmt.sweep_epochs(e, "full") for e in (25, 50, 100)] == [25, 50, 100]
    assert [gsmt.sweep_epochs(e, "smoke") for e in (25, 50, 100)] == [1, 2, 4]


def test_the_rule_takes_the_best_row_within_the_budget():
    def row(name, value):
        return SeedRuns(name, [0], [{"average_mAP": value}], "validation")

    rows = {name: row(name, value) for name, value in [("mask weight 1, 25 epochs", 0.1), ("mask weight 1, 50 epochs",
            0.3), ("mask weight 10, 50 epochs", 0.2), ("mask weight 1, 100 epochs", 0.9)]}
    assert gsmt.chosen_recipe(rows) == ("mask weight 1, 50 epochs", {"mask_weight": 1.0, "epochs": 50})
    rows["mask weight 10, 50 epochs"] = row("mask weight 10, 50 epochs", 0.35)
    assert gsmt.chosen_recipe(rows)[1] == {"mask_weight": 10.0, "epochs": 50}


def test_a_recipe_job_measures_on_validation(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    [(name, metrics)] = gsmt.run("recipe_mask10_epochs50", 0, "smoke").items()
    assert name == "mask weight 10, 50 epochs" and metrics["subset"] == "validation"
    assert metrics["mask_weight"] == 10.0 and metrics["epochs"] == 50 and metrics["trained_epochs"] == 2
    assert 0 <= metrics["column_iou"] <= 1 and metrics["final_loss"] > 0


@pytest.mark.parametrize("job, rows", [
    ("anet_no_mask_branch", {"without the mask branch"}),
    ("anet_training_x3", {"×3 training videos", "×3 training videos, class-map decoding"}),
    ("anet_readings", {*gsmt.ORACLES, gsmt.BOTH_SOURCES}),
])
def test_an_ablation_job_returns_its_rows(monkeypatch, tmp_path, job, rows):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    found = gsmt.run(job, 0, "smoke")
    assert set(found) == rows and all(0 <= m["average_mAP"] <= 1 for m in found.values())
    if job == "anet_training_x3":
        assert found["×3 training videos"]["training_videos"] == 3 * gsmt.run(
            "anet_no_mask_branch", 0, "smoke")["without the mask branch"]["training_videos"]
    if job == "anet_readings":  # the true class map and masks together decode every instance
        assert found["GSMT, true class map and masks"]["average_mAP"] > found["GSMT"]["average_mAP"]
