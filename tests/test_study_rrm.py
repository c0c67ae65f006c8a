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


def test_the_recipe_iteration_and_candidate_files_are_planned_on_the_headline_worlds():
    files = {result.name: result for result in rrm.RESULTS}
    recipe = files["06_recipe_validation.json"]
    assert recipe.jobs == (rrm.JOBS["recipe"],) and recipe.seeds == (0,) and recipe.subset == "validation"
    headline = find_result("rrm", "anet")
    result = files["06_iterations.json"]
    assert result.subset == "testing" and result.seeds == headline.seeds[:3] == (0, 1, 2)  # they pair with it
    assert result.jobs == (rrm.JOBS["iterations"], rrm.JOBS["iterations_x1"]) and rrm.TRAINED == (1, rrm.ITERATIONS)
    assert all(find_result("rrm", job) is result for job in result.jobs)
    assert dict(zip(result.jobs, rrm.TRAINED[::-1])) == rrm.ITERATION_JOBS
    candidates = files["06_candidates.json"]
    assert candidates.jobs == (rrm.JOBS["candidates"],) and candidates.seeds == result.seeds
    assert candidates.subset == "testing" and find_result("rrm", rrm.JOBS["candidates"]) is candidates


def test_the_candidate_job_measures_the_four_settings_on_the_headlines_bmn(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    rows = rrm.run(rrm.JOBS["candidates"], 0, "smoke")
    assert set(rows.pop("meta")["train_seconds"]) == {"bmn and classifier"}
    assert list(rows) == list(rrm.CANDIDATE_ROWS)
    for row in rows.values():
        assert 0 <= row["AR@100"] <= 1 and len(row["recall_by_coverage"]) == len(rrm.COVERAGE_EDGES) + 1
    assert rows["oracle map"]["map_error"] == 0


def test_choose_recipe_applies_the_notebook_rule():
    def row(ar, error):
        return {"AR@100": ar, "map_error": error}

    rows = {"BMN, lr 0.001": row(0.80, 0.020), "BMN, lr 0.003": row(0.85, 0.015), "BMN, lr 0.01": row(0.85, 0.010),
            "RRM x3 joint with BMN, lr 0.01, test x0": row(0.80, 0.014),  # not a test x3 row: not a candidate
            "RRM x3 joint with BMN, lr 0.01, test x3": row(0.80, 0.013),
            "RRM x3 on frozen BMN, lr 0.003, test x3": row(0.86, 0.012),
            "RRM x3 on frozen BMN, lr 0.01, test x3": row(0.86, 0.014)}
    assert rrm.choose_bmn_lr(rows) == 0.01  # the best AR@100, a tie to the larger rate
    assert rrm.choose_recipe(rows) == (0.01, False, 0.003)
    rows["RRM x3 joint with BMN, lr 0.01, test x3"] = row(0.80, 0.011)
    assert rrm.choose_recipe(rows) == (0.01, True, 0.01)


def test_the_recipe_job_measures_the_grid_on_validation(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    part = json.loads(run_job("rrm", rrm.JOBS["recipe"], 0, "smoke").read_text())
    assert part["subset"] == "validation"
    rows = part["rows"]
    bmn_lr = rrm.choose_bmn_lr(rows)
    expected = ([f"BMN, lr {lr:g}" for lr in rrm.RECIPE_BMN_LRS]
                + [f"RRM x3 joint with BMN, lr {bmn_lr:g}, test x{k}" for k in (0, 3)]
                + [f"RRM x3 on frozen BMN, lr {lr:g}, test x3" for lr in rrm.RECIPE_RRM_LRS])
    assert list(rows) == expected and all(row["subset"] == "validation" for row in rows.values())
    chosen = rrm.choose_recipe(rows)
    assert chosen[0] == bmn_lr and chosen[2] in rrm.RECIPE_RRM_LRS + (bmn_lr,)
    assert rows[expected[4]]["gflops"] > rows[expected[3]]["gflops"]  # 3 iterations cost more than 0


def test_the_iteration_job_measures_the_headline_models_and_the_oracles(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    iterations = json.loads(run_job("rrm", rrm.JOBS["iterations"], 0, "smoke").read_text())["rows"]
    x1 = json.loads(run_job("rrm", rrm.JOBS["iterations_x1"], 0, "smoke").read_text())["rows"]
    refined = [f"RRM x3, test x{k}" for k in sorted(set(rrm.TEST_ITERATIONS) | {rrm.ITERATIONS})]
    assert list(iterations) == ["BMN", *refined, *rrm.ORACLE_ROWS]
    assert list(x1) == [f"RRM x1, test x{k}" for k in sorted(set(rrm.TEST_ITERATIONS) | {1})]
    headline = json.loads(run_job("rrm", "anet", 0, "smoke").read_text())["rows"]
    for key in ("AR@10", "AR@100", "AUC", "average_mAP", "map_error"):  # one training: the headline's models
        assert iterations["BMN"][key] == pytest.approx(headline[rrm.ROWS[0]][key], abs=1e-9)
        assert iterations[f"RRM x3, test x{rrm.ITERATIONS}"][key] == pytest.approx(headline[rrm.ROWS[1]][key], abs=1e-9)
    for row in [*iterations.values(), *x1.values()]:
        assert len(row["recall_by_coverage"]) == len(rrm.COVERAGE_EDGES) + 1 and row["gflops"] > 0
        assert sum(row["coverage_counts"]) > 0 and row["AR@100 short"] == row["recall_by_coverage"][0]
    assert iterations["oracle map"]["map_error"] == 0
    gflops = [iterations[name]["gflops"] for name in ["BMN", *refined]]
    assert gflops == sorted(gflops) and len(set(gflops)) == len(gflops)  # every iteration costs
    assert x1["RRM x1, test x10"]["gflops"] == iterations["RRM x3, test x10"]["gflops"]  # the same unrolled network


def test_the_candidate_rows_share_the_bmn_of_the_iteration_rows():
    world = standard_world("anet", "smoke", 0)
    torch.manual_seed(0)
    model = rrm.detector(**rrm.kwargs_of(world)).eval()
    candidates = rrm.candidate_rows(world, model)
    iterations = rrm.iteration_rows(world, model, {})
    assert list(candidates) == list(rrm.CANDIDATE_ROWS) and list(iterations) == ["BMN", *rrm.ORACLE_ROWS]
    for key in ("AR@10", "AR@100", "AUC", "average_mAP", "map_error"):
        assert candidates["BMN"][key] == iterations["BMN"][key]
        assert candidates["oracle map"][key] == iterations["oracle map"][key]


def test_recall_by_coverage_weighs_back_to_the_official_ar100():
    from tadlab.bmn_measures import measure_bmn

    world = standard_world("anet", "smoke", 0)
    torch.manual_seed(0)
    model = rrm.detector(**rrm.kwargs_of(world)).eval()
    row = measure_bmn(model.proposer, model.classifier, world, "testing", coverage_edges=rrm.COVERAGE_EDGES)
    counts = torch.tensor(row["coverage_counts"], dtype=torch.float64)
    recall = torch.tensor([0.0 if r is None else r for r in row["recall_by_coverage"]], dtype=torch.float64)
    assert float((recall * counts).sum() / counts.sum()) == pytest.approx(row["AR@100"], abs=1e-6)
