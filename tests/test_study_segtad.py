"""The segtad study (notebook 07): its results files pair with notebook 01's baselines (same preset, seeds), a smoke
job returns the three readings of one trained model and exports seed 0's model so that it ships and loads, the
ablation job changes one setting, the recipe sweep's jobs read one change each on validation and the choice rule
picks from their rows, and the stored full-profile rows (when present) hold what the notebook reads."""
import json

import pytest
import torch

import tadlab.pretrained as pretrained
from tadlab.models import SegTADConfig
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, RESULTS_DIR, SeedRuns, load_runs, standard_world
from tadlab.studies import STUDIES, exported_models, merge, part_path, plan, run_job
from tadlab.studies import segtad

ROWS = ["SegTAD", "SegTAD, classes from the proposal", "1D-SSN alone (class-map grouping)"]


def test_the_study_declares_its_files_beside_notebook_01():
    assert STUDIES.index("baselines") < STUDIES.index("segtad") < STUDIES.index("benchmark")
    files = {result.name: result for name, result in plan("full") if name == "segtad"}
    assert files["07_headline.json"].jobs == ("anet",) and files["07_headline.json"].seeds == HEADLINE_SEEDS
    assert files["07_ablations.json"].seeds == ABLATION_SEEDS
    assert list(segtad.READINGS) == ROWS


def test_the_recipe_is_notebook_07s_and_overrides_change_one_setting():
    chosen = segtad.recipe("anet", "full")
    assert chosen["epochs"] == 25 and chosen["lr"] == 3e-3 and chosen["batch_size"] == 16
    assert chosen["config"] == {"hidden": 64, "graph_k": 4, "pdn_k": 4, "center_features": True, "eta": 4}
    changed = segtad.recipe("anet", "full", pdn_graph=False)
    assert changed["config"] == {**chosen["config"], "pdn_graph": False}
    assert segtad.recipe("anet", "smoke")["epochs"] == 1
    fields = SegTADConfig.__dataclass_fields__
    for job, (name, change) in segtad.ABLATIONS.items():  # each ablation job: one setting of the model changed
        [(key, value)] = change.items()
        assert key not in segtad.MODEL and fields[key].default is True and value is False


def test_unknown_jobs_are_refused():
    with pytest.raises(ValueError, match="unknown job 'thumos'.*'anet'"):
        segtad.run("thumos", 0, "smoke")


def test_a_smoke_job_reads_one_model_three_ways_and_ships_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    path = run_job("segtad", "anet", 0, "smoke")
    assert path == part_path("smoke", "segtad", "anet", 0)
    part = json.loads(path.read_text())
    assert list(part["rows"]) == ROWS
    for metrics in part["rows"].values():
        assert 0.0 <= metrics["average_mAP"] <= 1.0 and len(metrics["mAP"]) == 10
    assert part["meta"]["recipe"]["epochs"] == 1
    [(entry, folder)] = [(e, f) for e, f in exported_models("smoke") if e["name"] == "segtad"]
    assert entry["preset"] == "anet" and entry["detect"] == {"classes": "video", "top_classes": 2}
    assert entry["world"] == {"preset": "anet", "profile": "smoke", "seed": 0}
    target = tmp_path / "shipped"
    target.mkdir()
    pretrained.ship([(entry, folder)], target)
    monkeypatch.setattr(pretrained, "HERE", target)
    monkeypatch.setattr(pretrained, "MANIFEST", target / "manifest.json")
    model = pretrained.load("segtad", preset="anet", seed=0)
    check = pretrained.check_metrics(model, standard_world("anet", "smoke", 0), segtad.TIOU["anet"], **entry["detect"])
    assert check == pytest.approx(entry["metrics"]["check"], abs=1e-6)
    stored = load_runs(merge("segtad", "07_headline.json", "smoke"))
    assert list(stored) == ROWS and stored.meta["study"] == "segtad" and stored["SegTAD"].seeds == [0]


def test_the_ablation_job_changes_the_pdn_graph_only(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    part = json.loads(run_job("segtad", "pdn_no_graph", 0, "smoke").read_text())
    assert list(part["rows"]) == [f"PDN without graph (1x1 conv): {row}" for row in ROWS]
    assert part["meta"]["recipe"]["config"]["pdn_graph"] is False and "pretrained" not in part["meta"]
    world = standard_world("anet", "smoke", 0)
    model, _ = segtad.train_segtad(world, "anet", "smoke", 0, pdn_graph=False)
    assert not model.config.pdn_graph and model.config.hidden == 64 and not model.training


def test_the_stored_headline_pairs_with_notebook_01():
    path = RESULTS_DIR / "07_headline.json"
    stored = load_runs(path)
    if stored.meta.get("study") != "segtad":
        pytest.skip("07_headline.json is still the hand-run notebook's (not the workflow's)")
    baselines = load_runs(RESULTS_DIR / "01_baselines.json")
    assert list(stored) == ROWS and stored.meta["profile"] == "full"
    for row in stored.values():
        assert row.seeds == baselines["anet: class map grouping"].seeds
        assert all(len(m["mAP"]) == 10 and "bootstrap_error" in m and "duration" in m for m in row.metrics)
    assert torch.isfinite(torch.tensor(stored["SegTAD"].values())).all()


def test_replicates_train_on_one_world_with_other_training_seeds(monkeypatch, tmp_path):
    files = {result.name: result for name, result in plan("full") if name == "segtad"}
    replicates = files["07_init_replicates.json"]
    assert replicates.seeds == segtad.REPLICATE_SEEDS and len(replicates.seeds) >= 3
    assert replicates.meta["world_seed"] == segtad.REPLICATE_WORLD in HEADLINE_SEEDS
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    headline = json.loads(run_job("segtad", "anet", 0, "smoke").read_text())
    same = json.loads(run_job("segtad", "init", 0, "smoke").read_text())
    assert list(same["rows"]) == ROWS and same["meta"]["world_seed"] == segtad.REPLICATE_WORLD
    for row in ROWS:  # training seed 0 on world 0 is the headline's seed 0
        assert same["rows"][row]["average_mAP"] == pytest.approx(headline["rows"][row]["average_mAP"], abs=1e-9)
    other = json.loads(run_job("segtad", "pdn_no_graph_init", 0, "smoke").read_text())
    assert list(other["rows"]) == [f"PDN without graph (1x1 conv): {row}" for row in ROWS]
    assert other["meta"]["recipe"]["config"]["pdn_graph"] is False


def test_class_sources_read_one_segtad_with_three_sources_of_classes(monkeypatch, tmp_path):
    files = {result.name: result for name, result in plan("full") if name == "segtad"}
    assert files["07_class_sources.json"].seeds == HEADLINE_SEEDS
    assert set(segtad.CLASS_SOURCE_JOBS.values()) == {"thumos", "anet"}
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    headline = json.loads(run_job("segtad", "anet", 0, "smoke").read_text())["rows"]
    part = json.loads(run_job("segtad", "anet_classes", 0, "smoke").read_text())
    assert list(part["rows"]) == [f"anet: {source}" for source in segtad.CLASS_SOURCES]
    own, classified, oracle = (part["rows"][f"anet: {source}"] for source in segtad.CLASS_SOURCES)
    assert own["average_mAP"] == pytest.approx(headline["SegTAD"]["average_mAP"], abs=1e-9)  # the same training
    assert all(0 <= row["average_mAP"] <= 1 and len(row["mAP"]) == 10 for row in (own, classified, oracle))
    assert oracle["average_mAP"] > 0.3  # the true classes: what the proposals reach when the class is right


def test_true_classes_decide_every_label():
    world = standard_world("anet", "smoke", 0)
    model, _ = segtad.train_segtad(world, "anet", "smoke", 0)
    items = list(world.dataset("testing"))
    detections = segtad.true_class_detections(model, world)
    assert len(detections) == len(items)
    for item, found in zip(items, detections):
        assert len(found["labels"]) > 0 and set(found["labels"].tolist()) <= set(item["labels"].tolist())
        assert (found["scores"] > 0).all()
    metrics = segtad.true_class_metrics(model, world, "anet")
    assert metrics["subset"] == "testing" and len(metrics["mAP"]) == 10 and 0 <= metrics["average_mAP"] <= 1


def test_the_recipe_sweep_is_one_change_each_from_the_headline_on_its_world():
    files = {result.name: result for name, result in plan("full") if name == "segtad"}
    sweep = files["07_recipe_validation.json"]
    assert sweep.jobs == tuple(segtad.SWEEP_JOBS) and sweep.seeds == (0,) == (HEADLINE_SEEDS[0],)
    assert sweep.subset == "validation" and list(segtad.SWEEP_JOBS.values()) == list(segtad.SWEEP)
    def flat(chosen):  # a recipe's settings, its model config's among them
        return {**{key: value for key, value in chosen.items() if key != "config"}, **chosen["config"]}

    headline = flat(segtad.recipe("anet", "full"))
    for name in segtad.SWEEP:  # at most one setting differs from the headline recipe
        chosen = flat(segtad.sweep_recipe(name, "full"))
        assert chosen.keys() == headline.keys()
        assert len([key for key in headline if chosen[key] != headline[key]]) <= 1, name
    assert [segtad.sweep_recipe(name, "full")["epochs"] for name in segtad.SWEEP] == [25, 25, 10, 50, 25]
    assert [segtad.sweep_recipe(name, "ci")["epochs"] for name in segtad.SWEEP] == [15, 15, 6, 30, 15]
    assert [segtad.sweep_recipe(name, "smoke")["epochs"] for name in segtad.SWEEP] == [1, 1, 1, 2, 1]
    assert segtad.sweep_recipe("paper (no centring), 25 epochs", "full")["config"]["center_features"] is False
    assert segtad.sweep_recipe("centred, eta 2", "full")["config"]["eta"] == 2
    headline_pairs = [(r, d) for r in segtad.SWEEP for d in segtad.DECODINGS if segtad.is_headline(r, d)]
    assert headline_pairs == [("centred, 25 epochs", "video classes, top 2")]


def test_the_sweep_jobs_read_one_model_with_each_decoding_on_validation(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    for job, name in segtad.SWEEP_JOBS.items():
        part = json.loads(run_job("segtad", job, 0, "smoke").read_text())
        assert part["subset"] == "validation"
        assert list(part["rows"]) == [f"{name}: {decoding}" for decoding in segtad.DECODINGS]
        assert all(m["subset"] == "validation" and len(m["mAP"]) == 10 and 0 <= m["average_mAP"] <= 1
                   for m in part["rows"].values())
        assert part["meta"]["recipe"] == segtad.sweep_recipe(name, "smoke")
    stored = load_runs(merge("segtad", "07_recipe_validation.json", "smoke"))
    assert list(stored) == [f"{r}: {d}" for r in segtad.SWEEP for d in segtad.DECODINGS]
    assert stored.meta["study"] == "segtad" and stored.meta["jobs"]["recipe_epochs50"]["0"]["recipe"]["epochs"] == 2
    choice = segtad.choose_recipe(stored)
    assert choice["recipe"] in segtad.SWEEP and choice["decoding"] in segtad.DECODINGS


def _sweep_rows(values: dict) -> dict:
    """Hand-made sweep rows: ``{(recipe index, decoding index): average mAP}``, 0.1 elsewhere."""
    rows = {}
    for i, name in enumerate(segtad.SWEEP):
        for j, decoding in enumerate(segtad.DECODINGS):
            row = f"{name}: {decoding}"
            rows[row] = SeedRuns(row, [0], [{"average_mAP": values.get((i, j), 0.1)}], "validation")
    return rows


def test_the_choice_rule_takes_the_recipe_with_the_best_decoding_then_its_best_decoding():
    recipes, decodings = list(segtad.SWEEP), list(segtad.DECODINGS)
    # recipe 1 has the best mean over its decodings, recipe 3 the best single decoding: the rule takes recipe 3
    rows = _sweep_rows({(1, 0): 0.30, (1, 1): 0.30, (1, 2): 0.30, (3, 0): 0.35, (3, 1): 0.2, (3, 2): 0.32})
    choice = segtad.choose_recipe(rows)
    assert choice["recipe"] == recipes[3] and choice["decoding"] == decodings[0]
    assert choice["average_mAP"] == pytest.approx(0.35)
    assert choice["runner_up_recipe"] == recipes[1] and choice["recipe_margin"] == pytest.approx(0.05)
    assert choice["runner_up_decoding"] == decodings[2] and choice["decoding_margin"] == pytest.approx(0.03)
    # an exact tie goes to the first recipe in SWEEP's order, with margin 0
    tied = segtad.choose_recipe(_sweep_rows({(4, 2): 0.4, (2, 1): 0.4}))
    assert tied["recipe"] == recipes[2] and tied["runner_up_recipe"] == recipes[4] and tied["recipe_margin"] == 0
    headline = segtad.choose_recipe(_sweep_rows({(1, 2): 0.37, (3, 2): 0.369}))
    assert segtad.is_headline(headline["recipe"], headline["decoding"])


def test_the_stored_recipe_sweep_is_the_workflows_on_the_headline_world():
    path = RESULTS_DIR / "07_recipe_validation.json"
    stored = load_runs(path)
    if stored.meta.get("study") != "segtad":
        pytest.skip("07_recipe_validation.json is still the hand-run notebook's (not the workflow's)")
    assert stored.meta["profile"] == "full" and stored.meta["preset"] == "anet"
    assert list(stored) == [f"{r}: {d}" for r in segtad.SWEEP for d in segtad.DECODINGS]
    for row in stored.values():
        assert row.seeds == [0] and row.subset == "validation"
        assert all(m["subset"] == "validation" and "bootstrap_error" in m for m in row.metrics)
    jobs = stored.meta["jobs"]
    assert jobs["recipe_centred"]["0"]["recipe"] == segtad.recipe("anet", "full")  # the headline's seed-0 training
    assert [jobs[job]["0"]["recipe"]["epochs"] for job in segtad.SWEEP_JOBS] == [25, 25, 10, 50, 25]
    choice = segtad.choose_recipe(stored)
    assert choice["recipe"] in segtad.SWEEP and choice["recipe_margin"] >= 0 and choice["decoding_margin"] >= 0
