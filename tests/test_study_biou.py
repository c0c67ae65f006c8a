"""Notebook 03's study: the descent of each mask loss is one job per seed (the stored file's three worlds), a smoke
job returns a row per shift and loss with sane boundary errors (its 30 steps are too few to move a boundary), and
IoU + dice and BCE put every boundary in place where the notebook asserts it (300 steps on the ci world)."""
import json

import pytest

from tadlab.experiments import RESULTS_DIR, load_runs
from tadlab.studies import STUDIES, find_result, merge, part_path, plan, run_job
from tadlab.studies import biou

LOSSES = ["IoU + dice", "IoU + dice + λ·L2", "bIoU + dice", "bIoU + dice + λ·L2 (Eq. 6)", "BCE"]
ROWS = [f"s = {shift}: {name}" for shift in (2, 5) for name in LOSSES]


def test_the_study_declares_the_descent_in_notebook_order():
    assert STUDIES.index("baselines") < STUDIES.index("biou") < STUDIES.index("gsmt")
    [result] = [result for name, result in plan("full") if name == "biou"]
    assert result is find_result("biou", "descent")
    assert result.name == "03_descent.json" and result.jobs == ("descent",) and result.seeds == (0, 1, 2)
    assert result.meta["kernel_size"] == 7 and result.meta["steps"]["full"] == 300 and result.meta["shifts"] == [2, 5]
    assert biou.descent_shifts(7) == (2, 5) and biou.record_steps(300) == (0, 50, 100, 300)
    assert biou.record_steps(30) == (0, 30)
    with pytest.raises(ValueError, match="unknown job 'iou'"):
        biou.run("iou", 0, "smoke")


def test_a_smoke_job_returns_every_shift_and_loss(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    path = run_job("biou", "descent", 0, "smoke")
    assert path == part_path("smoke", "biou", "descent", 0)
    part = json.loads(path.read_text())
    assert list(part["rows"]) == ROWS and part["meta"] == {"steps": 30, "record": [0, 30]}
    masks = {row["masks"] for row in part["rows"].values()}
    assert len(masks) == 1 and masks.pop() > 0
    for name, row in part["rows"].items():
        start = part["rows"][name.split(":")[0] + ": IoU + dice"]["boundary_error_0"]
        assert row["boundary_error_0"] == start > 0  # every loss starts from the same shifted masks
        assert 0 <= row["boundary_error_30"] <= start + 1 and 0.5 < row["foreground_level"] < 1
    stored = load_runs(merge("biou", "03_descent.json", "smoke"))
    assert list(stored) == ROWS and stored.meta["study"] == "biou" and stored.meta["kernel_size"] == 7


def test_iou_dice_and_bce_put_every_boundary_in_place():
    masks = biou.instance_masks(0, "ci")
    losses = biou.descent_losses(7)
    for shift in biou.descent_shifts(7):
        for name in ("IoU + dice", "BCE"):
            errors, last = biou.descend(losses[name], masks[:40], shift, 300, final=True)
            assert errors["boundary_error_0"] > 0 and errors["boundary_error_300"] == 0
            assert [e.tolist() for e in biou.extent(last)] == [e.tolist() for e in biou.extent(masks[:40])]


def test_the_stored_rows_are_the_workflows():
    stored = load_runs(RESULTS_DIR / "03_descent.json")
    if stored.meta.get("study") != "biou":
        pytest.skip("03_descent.json is still the hand-run notebook's (not the workflow's)")
    assert list(stored) == ROWS and stored.meta["profile"] == "full" and stored.meta["kernel_size"] == 7
    for name, row in stored.items():
        assert row.seeds == [0, 1, 2]
        if "λ" not in name and "bIoU" not in name:
            assert row.mean("boundary_error_300") == 0
