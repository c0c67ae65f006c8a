"""The notebooks keep the conventions (papermill parameters, stored outputs, exercises) and run with parameters.

Their outputs themselves are checked by `pytest --nbval notebooks` (strict), which `make test` runs after this.
"""
import json
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REQUIRED_PARAMETERS = ("seed", "device", "profile", "save_figures", "results_path")


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_the_sequence_exists_and_is_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers and numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_holds_the_parameters(path):
    first = code_cells(path)[0]
    assert "parameters" in first.metadata.get("tags", [])
    assigned = {line.split("=")[0].strip() for line in first.source.splitlines() if "=" in line}
    assert set(REQUIRED_PARAMETERS) <= assigned
    assert 'profile = "ci"' in first.source and "save_figures = False" in first.source
    assert "results_path = None" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stored_clean_and_exercises_have_solutions(path):
    cells = code_cells(path)
    assert all(c.execution_count is not None for c in cells if c.source.strip()), "re-execute and commit outputs"
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "warnings in outputs"
    assert any("solution" in c.metadata.get("tags", []) for c in cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_readme_lists_the_notebook(path):
    assert f"notebooks/{path.name}" in (ROOT / "README.md").read_text()


def test_primer_runs_with_papermill_parameters_and_writes_its_metrics(tmp_path):
    results = tmp_path / "primer.json"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_tad_primer.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"seed": 3, "preset": "anet", "profile": "smoke",
                                           "results_path": str(results)},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    metrics = json.loads(results.read_text())
    assert metrics["seeds"] == [3] and metrics["profile"] == "smoke" and metrics["subset"] == "testing"
    for key in ("baseline_average_mAP", "context_baseline_average_mAP", "class_map_average_mAP"):
        assert set(metrics[key]) == {"thumos", "anet"} and all(0 <= v <= 1 for v in metrics[key].values())
    assert len(metrics["baseline_mAP"]["anet"]) == len(metrics["tiou_thresholds"]["anet"]) == 10
    assert len(metrics["baseline_mAP"]["thumos"]) == len(metrics["tiou_thresholds"]["thumos"]) == 5


def test_sptad_notebook_runs_with_papermill_parameters_and_writes_its_metrics(tmp_path):
    results = tmp_path / "sptad.json"
    papermill.execute_notebook(str(ROOT / "notebooks" / "05_query_based_sptad.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"seed": 17, "num_stages": 2, "num_proposals": 12, "profile": "smoke",
                                           "results_path": str(results)},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    metrics = json.loads(results.read_text())
    assert metrics["seeds"] == [17] and metrics["profile"] == "smoke" and metrics["subset"] == "testing"
    assert metrics["num_stages"] == 2 and metrics["num_proposals"] == 12
    assert 0 <= metrics["average_mAP"] <= 1 and 0 <= metrics["duplicates"] <= 1
    assert len(metrics["mAP"]) == len(metrics["tiou_thresholds"]) == 5


def test_segtad_notebook_runs_with_papermill_parameters_and_writes_its_testing_metrics(tmp_path):
    results = tmp_path / "segtad.json"
    papermill.execute_notebook(str(ROOT / "notebooks" / "07_segmentation_segtad.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"seed": 17, "profile": "smoke", "results_path": str(results)},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    metrics = json.loads(results.read_text())
    assert metrics["subset"] == "testing" and metrics["seeds"] == [17] and metrics["profile"] == "smoke"
    assert 0 <= metrics["average_mAP"] <= 1 and len(metrics["mAP"]) == len(metrics["tiou_thresholds"]) == 10
    assert {"SegTAD", "naive", "context", "class map grouping"} <= set(metrics["rows_average_mAP"])


def test_rrm_notebook_runs_with_papermill_parameters_and_writes_its_metrics(tmp_path):
    # The command (-p seed 17 -p iterations 3 -p results_path r.json), at the "smoke" size to keep CI fast.
    results = tmp_path / "rrm.json"
    papermill.execute_notebook(str(ROOT / "notebooks" / "06_rrm_refinement.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"seed": 17, "iterations": 3, "profile": "smoke",
                                           "results_path": str(results)},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    metrics = json.loads(results.read_text())
    assert metrics["subset"] == "testing" and metrics["seed"] == 17 and metrics["iterations"] == 3
    assert 0 <= metrics["AR@100"] <= 1 and 0 <= metrics["average_mAP"] <= 1
    assert metrics["gflops"] > metrics["bmn"]["gflops"] > 0  # three RRM iterations cost more than BMN alone
    assert {"test x0", "test x1", "test x3", "test x15"} <= set(metrics["sweep"])


def test_gsmt_runs_with_papermill_parameters_and_writes_its_testing_metrics(tmp_path):
    """Issue 10's command (seed 17, preset thumos, results_path) at the "smoke" profile (the default "ci" trains
    longer); the stored full-profile rows it prints come from results/."""
    results = tmp_path / "gsmt.json"
    papermill.execute_notebook(str(ROOT / "notebooks" / "04_proposal_free_gsmt.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"seed": 17, "preset": "thumos", "results_path": str(results),
                                           "profile": "smoke"},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    metrics = json.loads(results.read_text())
    assert metrics["subset"] == "testing" and metrics["preset"] == "thumos" and metrics["seeds"] == [17]
    for key in ("average_mAP", "baseline_average_mAP", "context_baseline_average_mAP", "class_map_average_mAP"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert len(metrics["mAP"]) == len(metrics["tiou_thresholds"]) == 5  # THUMOS14's 0.3:0.7
