"""The nbval tolerance for training-run cells: numbers within the tolerance pass, numbers beyond it and any change
of the text around them fail, in the alignment itself and in a real `pytest --nbval` run on a small notebook."""
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from nbval_tolerance import TAG, TOLERANCE, Tolerance, align, align_outputs, cell_tolerance

ROOT = Path(__file__).resolve().parent.parent
LOOSE = Tolerance(abs=0.01, rel=0.0)


def test_numbers_within_the_tolerance_take_the_stored_text():
    assert align("mAP 0.043, loss 10.52", "mAP 0.040, loss 10.50", Tolerance(abs=0.005, rel=0.01)) \
        == "mAP 0.040, loss 10.50"


def test_a_number_beyond_the_tolerance_stays_as_computed_and_the_others_align():
    new = align("a 0.043 b 0.090", "a 0.040 b 0.050", LOOSE)
    assert new == "a 0.040 b 0.090" and new != "a 0.040 b 0.050"


def test_relative_and_absolute_parts_add_up():
    tolerance = Tolerance(abs=0.1, rel=0.1)
    assert tolerance.accepts(10.0 + 1.1 - 1e-9, 10.0) and not tolerance.accepts(10.0 + 1.1 + 1e-9, 10.0)
    assert tolerance.accepts(-0.09, 0.0) and not tolerance.accepts(-0.11, 0.0)


def test_text_around_the_numbers_is_compared_exactly():
    assert align("context 0.041 (testing)", "context 0.040 (validation)", LOOSE) == "context 0.041 (testing)"
    assert align("naive 0.041", "context 0.040", LOOSE) == "naive 0.041"
    assert align("0.041 0.5", "0.040", LOOSE) == "0.041 0.5"  # a number more or less: nothing aligns


def test_integers_are_facts_and_compared_exactly():
    assert align("29 of 30 videos", "28 of 30 videos", Tolerance(abs=5, rel=1)) == "29 of 30 videos"
    assert align("28 of 30 videos", "28 of 30 videos", LOOSE) == "28 of 30 videos"
    assert align("2.0", "2", Tolerance(abs=5, rel=1)) == "2.0"  # a decimal where an integer was: a change of form


def test_a_cell_may_let_integers_move_by_a_set_amount():
    tolerance = Tolerance(abs=0.0, rel=0.0, integers=1)
    assert align("run (3, 73), P 0.147", "run (3, 74), P 0.147", tolerance) == "run (3, 74), P 0.147"
    assert align("run (3, 72)", "run (3, 74)", tolerance) == "run (3, 72)"
    assert align("P 0.148", "P 0.147", tolerance) == "P 0.148"  # decimals keep their own tolerance


def test_signs_exponents_and_special_values():
    assert align("corr -0.131, lr 3.1e-3", "corr -0.130, lr 3e-3", LOOSE) == "corr -0.130, lr 3e-3"
    assert align("corr +0.25", "corr -0.13", LOOSE) == "corr +0.25"  # a flipped sign is far beyond the tolerance
    assert align("loss nan", "loss nan", LOOSE) == "loss nan" and align("loss nan", "loss 0.1", LOOSE) == "loss nan"
    assert align("information 0.0401", "information 0.04", LOOSE) == "information 0.04"  # no 'inf' inside words


def test_outputs_align_field_by_field_and_leave_the_originals_alone():
    stored = [nbformat.v4.new_output("stream", name="stdout", text="mAP 0.040\n"),
              nbformat.v4.new_output("execute_result", data={"text/plain": "0.5", "image/png": "abc"})]
    new = [nbformat.v4.new_output("stream", name="stdout", text="mAP 0.041\n"),
           nbformat.v4.new_output("execute_result", data={"text/plain": "0.505", "image/png": "abc"})]
    aligned = align_outputs(new, stored, LOOSE)
    assert aligned[0]["text"] == "mAP 0.040\n" and aligned[1]["data"]["text/plain"] == "0.5"
    assert new[0]["text"] == "mAP 0.041\n" and new[1]["data"]["text/plain"] == "0.505"
    assert align_outputs(new[:1], stored, LOOSE) == new[:1]  # another number of outputs: left to nbval


def test_the_checkout_loads_the_plugin_for_every_pytest_run():
    assert '"tests.nbval_tolerance"' in (ROOT / "conftest.py").read_text()


def test_cell_tolerance_from_tags_and_metadata():
    assert cell_tolerance({"tags": ["solution"]}) is None
    assert cell_tolerance({"tags": [TAG]}) == TOLERANCE
    assert cell_tolerance({"tags": [TAG], TAG: {"abs": 0.5}}) == Tolerance(abs=0.5, rel=TOLERANCE.rel)
    assert cell_tolerance({"tags": [TAG], TAG: {"integers": 2}}).integers == 2
    with pytest.raises(ValueError, match="'abs', 'rel' and/or 'integers'"):
        cell_tolerance({"tags": [TAG], TAG: {"atol": 0.5}})
    with pytest.raises(ValueError, match="rel must be a finite number"):
        Tolerance(abs=0.1, rel=math.inf)
    with pytest.raises(ValueError, match="integers must be an int"):
        Tolerance(abs=0.1, rel=0.1, integers=0.5)


def notebook(cells):
    """A notebook of code cells ``(source, stored stdout, tags)``, as if run and saved."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for count, (source, stored, tags) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, execution_count=count, metadata={"tags": tags})
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
        nb.cells.append(cell)
    return nb


def run_nbval(tmp_path, cells):
    """``pytest --nbval`` (strict) with the plugin, as the checkout's conftest.py loads it: outcome per cell."""
    path = tmp_path / "drift.ipynb"
    nbformat.write(notebook(cells), path)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval", str(path),
                           "-p", "tests.nbval_tolerance", "-rA", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    outcomes = {}
    for line in done.stdout.splitlines():
        for word in ("PASSED", "FAILED"):
            if line.startswith(word) and "::Cell " in line:
                outcomes[int(line.split("::Cell ")[1].split()[0])] = word
    assert len(outcomes) == len(cells), done.stdout + done.stderr
    return outcomes


def test_nbval_passes_drift_within_the_tolerance_and_fails_beyond_it(tmp_path):
    drift = textwrap.dedent("""\
        x = 0.0404
        print(f"mAP {x:.4f} after 3 epochs")""")
    outcomes = run_nbval(tmp_path, [
        (drift, "mAP 0.0400 after 3 epochs\n", [TAG]),            # 0: within the tolerance
        (drift, "mAP 0.0400 after 3 epochs\n", []),               # 1: the same drift, untagged: exact
        (drift, "mAP 0.3000 after 3 epochs\n", [TAG]),            # 2: beyond the tolerance
        (drift, "mAP 0.0400 after 4 epochs\n", [TAG]),            # 3: an integer differs
        (drift, "AP 0.0400 after 3 epochs\n", [TAG]),             # 4: the text around the number differs
    ])
    assert outcomes == {0: "PASSED", 1: "FAILED", 2: "FAILED", 3: "FAILED", 4: "FAILED"}
