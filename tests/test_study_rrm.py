"""Notebook 06's study (tadlab.studies.rrm): its plan, one smoke job (rows, metrics, the exported detectors), the RRM
trained on a frozen BMN, and the factory the shipped models are rebuilt with."""
import json

import pytest
import torch

import tadlab.pretrained as pretrained
from tadlab.experiments import HEADLINE_SEEDS, standard_world
from tadlab.studies import find_result, model_folder, part_path, plan, run_job
from tadlab.studies import rrm


def test_the_study_is_planned_on_the_worlds_of_notebook_01():
    assert "rrm" in dict(plan("full"))
    result = find_result("rrm", "anet")
    assert result.name == "06_headline.json" and result.subset == "testing" and result.jobs == ("anet",)
    assert set(result.seeds) <= set(HEADLINE_SEEDS) and result.seeds[:3] == (0, 1, 2)
    baselines = dict((r.name, r) for _, r in plan("full"))["01_baselines.json"]
    assert set(result.seeds) <= set(baselines.seeds)  # every seed pairs with a baseline row
    assert rrm.ROWS == ("BMN", f"BMN + RRM x{rrm.ITERATIONS}")
    with pytest.raises(ValueError, match="unknown job 'thumos'"):
        rrm.run("thumos", 0, "smoke")


@pytest.fixture(scope="module")
def smoke_part(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TADLAB_OUT", str(out))
        path = run_job("rrm", "anet", 0, "smoke")
        assert path == part_path("smoke", "rrm", "anet", 0)
        yield json.loads(path.read_text()), model_folder("smoke", "rrm", "anet", 0)


def test_a_smoke_job_gives_both_rows_with_their_metrics(smoke_part):
    part, _ = smoke_part
    assert list(part["rows"]) == list(rrm.ROWS) and part["subset"] == "testing"
    for row in part["rows"].values():
        assert 0 <= row["average_mAP"] <= 1 and len(row["mAP"]) == 10
        assert all(0 <= row[key] <= 1 for key in ("AR@1", "AR@10", "AR@100", "AUC"))
        assert row["proposal_average_mAP"] == pytest.approx(row["average_mAP"], abs=1e-9)  # two routes, one number
        assert "duration" in row and row["gflops"] > 0
    bmn, refined = (part["rows"][name] for name in rrm.ROWS)
    assert refined["gflops"] > bmn["gflops"]  # the RRM's iterations cost
    assert part["meta"]["iterations"] == rrm.ITERATIONS and part["meta"]["rrm_epochs"] == 1


def test_the_exported_detectors_rebuild_and_reproduce_their_check(smoke_part):
    part, folder = smoke_part
    entries = {entry["name"]: entry for entry in part["meta"]["pretrained"]}
    assert set(entries) == {"bmn", "bmn_rrm"}
    world = standard_world("anet", "smoke", 0)
    for name, iterations in (("bmn", 0), ("bmn_rrm", rrm.ITERATIONS)):
        entry = entries[name]
        assert entry["factory"] == "tadlab.studies.rrm:detector" and entry["kwargs"]["iterations"] == iterations
        model = pretrained.build(entry)
        model.load_state_dict(torch.load(folder / entry["file"], weights_only=True))
        check = pretrained.check_metrics(model.eval(), world, rrm.ANET_TIOU, **entry["detect"])
        assert check["average_mAP"] == pytest.approx(entry["metrics"]["check"]["average_mAP"], abs=1e-6)
    bmn = torch.load(folder / entries["bmn"]["file"], weights_only=True)
    refined = torch.load(folder / entries["bmn_rrm"]["file"], weights_only=True)
    # the RRM trains on a frozen BMN: every weight of BMN and of the classifier is BMN's own
    assert set(refined) - set(bmn) and all(key.startswith("proposer.refine.") for key in set(refined) - set(bmn))
    assert all(torch.equal(bmn[key], refined[key]) for key in bmn)


def test_train_rrm_changes_only_the_rrm():
    world = standard_world("anet", "smoke", 0)
    torch.manual_seed(0)
    base = rrm.detector(**rrm.kwargs_of(world))
    refined = rrm.train_rrm(base, world, 0, "smoke")
    state = refined.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in base.state_dict().items())
    assert refined.proposer.refine.update.head[-1].weight.abs().sum() > 0  # the head starts at zero: it learnt
    assert refined.proposer.refine.test_iterations == rrm.ITERATIONS


def test_the_every_cell_job_measures_both_candidate_rules_and_the_grid_ceiling(monkeypatch, tmp_path):
    result = find_result("rrm", "anet_every_cell")
    assert result.name == "06_every_cell.json" and result.seeds == find_result("rrm", "anet").seeds
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    part = json.loads(run_job("rrm", "anet_every_cell", 0, "smoke").read_text())
    expected = [f"{name}, {rule}" for name in rrm.ROWS for rule in rrm.CANDIDATE_RULES] + [rrm.GRID_CEILING]
    assert list(part["rows"]) == expected
    headline = json.loads(run_job("rrm", "anet", 0, "smoke").read_text())["rows"]
    for name in rrm.ROWS:  # the same training: BMN's candidates repeat the headline's proposals
        for key in ("AR@10", "AR@100", "AUC", "average_mAP"):
            assert part["rows"][f"{name}, BMN's candidates"][key] == pytest.approx(headline[name][key], abs=1e-9)
    ceiling = part["rows"][rrm.GRID_CEILING]
    assert len(ceiling["recall"]) == 10 and ceiling["AR@100"] == pytest.approx(sum(ceiling["recall"]) / 10)
    for row in expected[:-1]:  # no proposals beat the best cell of every instance
        assert part["rows"][row]["AR@100"] <= ceiling["AR@100"] + 1e-9
