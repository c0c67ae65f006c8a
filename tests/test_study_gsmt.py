"""Notebook 04's study: a smoke job of GSMT trains in seconds, returns both rows (masks and class-map decoding) with
their mAP curves, exports seed 0's model for shipping, and refuses an unknown job."""
import json

import pytest

import tadlab.studies as studies
from tadlab.studies import find_result, part_path, run_job
from tadlab.studies import gsmt


def test_gsmt_is_a_study_after_the_baselines():
    assert studies.STUDIES.index("baselines") < studies.STUDIES.index("gsmt")
    result = find_result("gsmt", "anet")
    assert result.name == "04_headline.json" and result.seeds == (0, 1, 2, 3, 4) and result.subset == "testing"


def test_a_smoke_job_returns_both_rows_and_exports_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    path = run_job("gsmt", "anet", 0, "smoke")
    assert path == part_path("smoke", "gsmt", "anet", 0)
    part = json.loads(path.read_text())
    rows = part["rows"]
    assert set(rows) == {"anet: GSMT", "anet: GSMT, class-map decoding"}
    for metrics in rows.values():
        assert 0 <= metrics["average_mAP"] <= 1 and len(metrics["mAP"]) == len(metrics["tiou_thresholds"]) == 10
        assert metrics["subset"] == "testing"
    assert rows["anet: GSMT"]["decoding"] == "long" and 0 <= rows["anet: GSMT"]["column_iou"] <= 1
    [entry] = part["meta"]["pretrained"]
    assert (entry["name"], entry["preset"], entry["seed"]) == ("gsmt", "anet", 0)
    assert entry["detect"] == {"source": "masks", "decoding": "long", "nms": "anet"}
    assert entry["kwargs"]["positional"] == "fixed" and entry["world"] == {"preset": "anet", "profile": "smoke",
                                                                          "seed": 0}
    assert (path.parent / "seed0-models" / entry["file"]).is_file()


def test_an_unknown_job_is_refused():
    with pytest.raises(ValueError, match="unknown job 'thumos' of study 'gsmt'; its jobs are"):
        gsmt.run("thumos", 0, "smoke")
    with pytest.raises(ValueError, match="has no job 'thumos'"):
        run_job("gsmt", "thumos", 0, "smoke")


@pytest.mark.parametrize("positional", ["none", "learned"])
def test_a_positional_job_changes_only_the_encoding(monkeypatch, tmp_path, positional):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    assert find_result("gsmt", f"anet_positional_{positional}").name == "04_positional.json"
    rows = gsmt.run(f"anet_positional_{positional}", 0, "smoke")
    name = f"anet, positional {positional}: GSMT"
    assert set(rows) == {name, f"{name}, class-map decoding"}
    assert all(0 <= m["average_mAP"] <= 1 for m in rows.values())


def test_the_live_ci_run_trains_more_steps_than_the_full_recipes_batch_would_give():
    from tadlab.studies import gsmt

    assert gsmt.train_options("full") == gsmt.TRAIN and gsmt.train_options("full")["batch_size"] == 16
    assert gsmt.train_options("ci") == {**gsmt.TRAIN, "batch_size": 4} and gsmt.EPOCHS["ci"] == 80
    assert gsmt.EPOCHS["full"] == gsmt.RECIPE["epochs"]


def test_the_oracle_job_decodes_one_trained_model_with_each_half_true(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    result = find_result("gsmt", "thumos_oracles")
    assert result.name == "04_oracles.json" and result.jobs == ("thumos_oracles",)
    assert set(result.seeds) <= set(gsmt.HEADLINE_SEEDS) and len(result.seeds) >= 2 and result.subset == "testing"
    rows = json.loads(run_job("gsmt", "thumos_oracles", 0, "smoke").read_text())["rows"]
    assert list(rows) == [f"thumos: {row}" for row in gsmt.ORACLES]
    assert {metrics["decoding"] for metrics in rows.values()} <= {"long", "short"}
    assert len({metrics["decoding"] for metrics in rows.values()}) == 1  # one decoding, chosen on validation
    assert all(metrics["subset"] == "testing" and len(metrics["mAP"]) == 5 for metrics in rows.values())
    # Both halves true: every instance decoded exactly, whatever the model learned.
    assert rows["thumos: GSMT, true class map and masks"]["average_mAP"] == 1.0
