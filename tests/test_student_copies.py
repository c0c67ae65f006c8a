"""Student copies (scripts/student_copies.py): solutions become empty exercise cells, a student's copy is never
overwritten, and every student copy runs end to end at profile="smoke", so no cell outside a solution needs a
variable that only a solution defines. Outputs are not compared (nbval checks the notebooks themselves)."""
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOKE_TIMEOUT_S = 600  # a smoke run takes seconds to a minute on a loaded 2-core machine

spec = importlib.util.spec_from_file_location("student_copies", ROOT / "scripts" / "student_copies.py")
student_copies = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student_copies)


def tags(cell):
    return cell.metadata.get("tags", [])


def small_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("**1.** ... **2.** ... **3.** ..."),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("# Solution 2: the second\nprint(x)", metadata={"tags": ["solution"]}),
                nbformat.v4.new_code_cell("print(x + 1)", metadata={"tags": ["solution"]}),
                nbformat.v4.new_code_cell("y = x")]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    return nb


def test_solutions_become_numbered_empty_exercise_cells():
    nb = small_notebook()
    before = nbformat.writes(nb)
    student = student_copies.student_notebook(nb)
    assert nbformat.writes(nb) == before, "the input notebook is not changed"
    nbformat.validate(student)
    assert [c.source for c in student.cells[:2]] == [c.source for c in nb.cells[:2]]
    assert student.cells[4].source == "y = x"
    exercises = student.cells[2:4]
    assert [c.source for c in exercises] == ["# Exercise 2: your code here\n", "# Exercise 3: your code here\n"]
    assert all(tags(c) == ["exercise"] and c.outputs == [] and c.cell_type == "code" for c in exercises)
    assert [c.id for c in exercises] == [c.id for c in nb.cells[2:4]], "the same copy every time"


def test_a_students_copy_is_never_overwritten(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    nbformat.write(small_notebook(), source / "01_small.ipynb")
    lab = tmp_path / "lab"
    done = student_copies.write_copies(lab, keep_existing=True, source=source)
    assert done == {lab / "01_small.ipynb": "written"}
    (lab / "01_small.ipynb").write_text("a student's work")
    nbformat.write(small_notebook(), source / "02_next.ipynb")  # a notebook added later still arrives
    done = student_copies.write_copies(lab, keep_existing=True, source=source)
    assert done == {lab / "01_small.ipynb": "kept", lab / "02_next.ipynb": "written"}
    assert (lab / "01_small.ipynb").read_text() == "a student's work"
    student_copies.write_copies(lab, with_solutions=True, source=source)  # without --keep-existing: rewritten
    assert (lab / "01_small.ipynb").read_bytes() == (source / "01_small.ipynb").read_bytes()


def run_smoke(path: Path) -> subprocess.CompletedProcess:
    """Execute one notebook at profile="smoke" in its own folder with papermill, in a process of its own."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="agg")
    command = [sys.executable, "-m", "papermill", str(path), str(path.with_suffix(".out.ipynb")), "-p", "profile",
               "smoke", "--cwd", str(path.parent), "-k", "python3", "--no-progress-bar", "--log-level", "WARNING"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=SMOKE_TIMEOUT_S)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Every student copy written into a fresh folder and executed, two at a time (the runs are mostly imports
    and kernel start-up, one core each)."""
    root = tmp_path_factory.mktemp("student")
    folder = root / "student"
    student_copies.write_copies(folder)
    copies = sorted(folder.glob("*.ipynb"))
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        results = dict(zip([p.name for p in copies], pool.map(run_smoke, copies)))
    return root, folder, results


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_runs_at_profile_smoke(smoke_runs, path):
    root, folder, results = smoke_runs
    result = results[path.name]
    assert result.returncode == 0, f"{path.name} at profile smoke:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    executed = nbformat.read(folder / path.with_suffix(".out.ipynb").name, as_version=4)
    assert not any("solution" in tags(c) for c in executed.cells)
    assert any("exercise" in tags(c) for c in executed.cells)
    assert [p.name for p in root.iterdir()] == ["student"], "a smoke run wrote outside its folder (save_figures?)"
