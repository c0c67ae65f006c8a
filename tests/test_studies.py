"""The studies: results files declared by jobs and seeds, one part per job and seed, merged into results JSON; and
the whole workflow DAG at profile "smoke" through Snakemake, in a temporary folder."""
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tadlab.studies as studies
from tadlab.experiments import load_runs
from tadlab.studies import Result, merge, part_path, plan, results_dir, run_job

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_study(monkeypatch, tmp_path):
    """A study 'fake' whose job 'double' returns two rows from the seed, written under a temporary TADLAB_OUT."""
    module = types.ModuleType("tadlab.studies.fake")
    module.NOTEBOOK = "99"
    module.RESULTS = [Result("99_fake.json", jobs=("double", "half"), seeds=(0, 1, 2), meta={"what": "a test"}),
                      Result("99_choice.json", jobs=("choose",), seeds=(0,), subset="validation")]

    def run(job, seed, profile, device="cpu"):
        if job == "double":
            return {"A": {"average_mAP": 0.1 * seed}, "B": {"average_mAP": 0.2 * seed}, "meta": {"seen": seed}}
        if job == "half":
            return {"C": {"average_mAP": 0.05 * seed}}
        return {"pick": {"average_mAP": 0.5}}

    module.run = run
    monkeypatch.setitem(sys.modules, "tadlab.studies.fake", module)
    monkeypatch.setattr(studies, "STUDIES", ("fake",))
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    return module


def test_profiles_write_their_own_places(monkeypatch, tmp_path):
    monkeypatch.setenv("TADLAB_OUT", str(tmp_path))
    assert results_dir("full") == ROOT / "results" and results_dir("smoke") == tmp_path / "results-smoke"
    assert part_path("smoke", "s", "j", 3) == tmp_path / "parts" / "smoke" / "s" / "j" / "seed3.json"
    with pytest.raises(ValueError, match="profile must be one of"):
        results_dir("huge")


def test_results_declare_valid_names_jobs_and_seeds():
    result = Result("x.json", jobs=("a", "b=2"), seeds=(0, 1, 2))
    assert result.seeds_at("full") == (0, 1, 2) and result.seeds_at("smoke") == (0,)
    with pytest.raises(ValueError, match="plain NAME.json"):
        Result("dir/x.json", jobs=("a",), seeds=(0,))
    with pytest.raises(ValueError, match="jobs must be"):
        Result("x.json", jobs=("a b",), seeds=(0,))
    with pytest.raises(ValueError, match="seeds must be"):
        Result("x.json", jobs=("a",), seeds=(-1,))


def test_every_study_of_the_package_plans_its_files_once():
    entries = plan("full")
    names = [result.name for _, result in entries]
    assert len(names) == len(set(names)) and "01_baselines.json" in names
    baselines = dict((r.name, r) for _, r in entries)["01_baselines.json"]
    assert len(baselines.seeds) >= 5 and baselines.needs == ("01_recipe_validation.json",)


def test_every_committed_results_file_is_made_by_the_workflow():
    # a study plans it, or it is one of the two files the Snakefile's external rules make (README, "make results")
    external = {"01_official_eval.json", "real_benchmarks.json"}
    planned = {result.name for _, result in plan("full")}
    committed = {path.name for path in (Path(__file__).parents[1] / "results").glob("*.json")}
    assert committed - external <= planned, f"not made by any study: {sorted(committed - external - planned)}"
    assert planned <= committed, f"planned but not committed: {sorted(planned - committed)}"
    snakefile = (Path(__file__).parents[1] / "workflow" / "Snakefile").read_text()
    assert all(f'"{name}"' in snakefile for name in external)


def test_a_job_writes_its_part_and_merge_gathers_rows_over_seeds(fake_study, tmp_path):
    for seed in (0, 1, 2):
        run_job("fake", "double", seed, "full")
        run_job("fake", "half", seed, "full")
    part = json.loads(part_path("full", "fake", "double", 1).read_text())
    assert part["rows"]["A"]["average_mAP"] == pytest.approx(0.1) and part["meta"] == {"seen": 1}
    out = merge("fake", "99_fake.json", "full", output=tmp_path / "merged.json")
    rows = load_runs(out)
    assert list(rows) == ["A", "B", "C"] and rows["B"].seeds == [0, 1, 2]
    assert rows["B"].values().tolist() == pytest.approx([0.0, 0.2, 0.4])
    assert rows.meta["what"] == "a test" and rows.meta["notebook"] == "99" and rows.meta["profile"] == "full"
    assert rows.meta["jobs"]["double"]["2"]["seen"] == 2 and rows.meta["subset"] == "testing"


def test_list_seconds_adds_up_the_stored_jobs_times(fake_study, tmp_path, capsys, monkeypatch):
    from tadlab.studies.__main__ import main

    monkeypatch.setattr(studies, "RESULTS_DIR", tmp_path / "results")  # never the checkout's results/
    for job in ("double", "half"):
        for seed in (0, 1, 2):
            run_job("fake", job, seed, "full")
    parts = [json.loads(part_path("full", "fake", job, seed).read_text())["seconds"]
             for job in ("double", "half") for seed in (0, 1, 2)]
    merged = merge("fake", "99_fake.json", "full", output=tmp_path / "merged.json")
    assert studies.stored_seconds(merged) == pytest.approx(parts)  # one time per job and seed, as measured
    external = tmp_path / "external.json"
    external.write_text(json.dumps({"runs": []}))
    assert studies.stored_seconds(external) == []
    assert results_dir("full") == tmp_path / "results"
    results_dir("full").mkdir()
    shutil.copy(merged, results_dir("full") / "99_fake.json")
    assert main(["list", "--seconds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "99_fake.json" in lines[0] and f"stored: 6 jobs, {sum(parts) / 3600:.2f} h" in lines[0]
    assert "99_choice.json" in lines[1] and lines[1].endswith("; stored: none")
    assert lines[2].startswith("in all: 6 stored jobs")


def test_merge_names_a_missing_part_and_run_refuses_unknown_jobs_and_seeds(fake_study, tmp_path):
    run_job("fake", "double", 0, "full")
    with pytest.raises(FileNotFoundError, match="job 'double', seed 1 is missing"):
        merge("fake", "99_fake.json", "full", output=tmp_path / "merged.json")
    with pytest.raises(ValueError, match="has no job 'triple'"):
        run_job("fake", "triple", 0, "full")
    with pytest.raises(ValueError, match="seed 7 is not one of its seeds"):
        run_job("fake", "double", 7, "full")
    with pytest.raises(ValueError, match="seed 1 is not one of its seeds at 'smoke'"):
        run_job("fake", "double", 1, "smoke")
    with pytest.raises(ValueError, match="unknown study 'other'"):
        run_job("other", "double", 0, "full")


def test_merge_refuses_a_part_of_another_seed(fake_study, tmp_path):
    for seed in (0, 1, 2):
        run_job("fake", "half", seed, "full")
        run_job("fake", "double", seed, "full")
    shutil.copy(part_path("full", "fake", "half", 0), part_path("full", "fake", "half", 2))
    with pytest.raises(ValueError, match="holds job 'half', seed 0"):
        merge("fake", "99_fake.json", "full", output=tmp_path / "merged.json")


def test_the_whole_workflow_runs_at_smoke(tmp_path):
    """make results PROFILE=smoke, into a temporary folder: every results file of every study and the shipped
    models' manifest, then nothing left to do."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    if not Path(snakemake).is_file():
        message = "needs snakemake beside this Python (the test extra installs it: make test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    command = [snakemake, "-s", str(ROOT / "workflow" / "Snakefile"), "--config", "profile=smoke",
               f"python={sys.executable}", "--cores", "2", "--rerun-triggers", "mtime", "--directory", str(tmp_path)]
    env = {**os.environ, "TADLAB_OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for study_name, result in plan("smoke"):
        path = tmp_path / "out" / "results-smoke" / result.name
        rows = load_runs(path)
        assert rows and rows.meta["profile"] == "smoke" and rows.meta["study"] == study_name
        assert all(0 <= row.mean() <= 1 for row in rows.values() if "average_mAP" in row.metrics[0])
    manifest = json.loads((tmp_path / "out" / "pretrained-smoke" / "manifest.json").read_text())
    assert {(m["name"], m["preset"]) for m in manifest["models"]} >= {("naive", "anet"), ("context", "thumos")}
    again = subprocess.run(command + ["--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert "Nothing to be done" in again.stdout + again.stderr  # resumable: the parts and files are there
