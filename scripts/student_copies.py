"""Copies of the notebooks for working in: student copies without solutions, or full copies for `make lab`.

    python scripts/student_copies.py                              # student copies in out/student/ (make student)
    python scripts/student_copies.py --output-dir lab --keep-existing --with-solutions   # make lab
    python scripts/student_copies.py --output-dir lab-student --keep-existing            # make lab STUDENT=1

A student copy replaces every cell tagged `solution` by an empty code cell tagged `exercise`, numbered in order
("# Exercise 1: your code here"; a solution whose first line reads "# Solution N..." keeps its N). The other cells
and their stored outputs stay, so a student sees every figure before running anything.

With --keep-existing a copy that is already there is never overwritten: it is the student's work. To start one
notebook afresh, delete (or rename) its copy and run the command again.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTION_TAG, EXERCISE_TAG = "solution", "exercise"


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose solution cells are empty exercise cells (the input is not changed)."""
    nb = nbformat.from_dict(nb)  # a deep copy
    cells, number = [], 0
    for cell in nb.cells:
        if not is_solution(cell):
            cells.append(cell)
            continue
        stated = re.match(r"#\s*Solution\s+(\d+)", cell.source)
        number = int(stated.group(1)) if stated else number + 1
        exercise = nbformat.v4.new_code_cell(f"# Exercise {number}: your code here\n",
                                             metadata={"tags": [EXERCISE_TAG]})
        if "id" in cell:
            exercise.id = cell.id  # the same id as the solution's: the same copy every time
        cells.append(exercise)
    nb.cells = cells
    return nb


def notebook_paths(source: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks of ``source``, in order."""
    paths = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise SystemExit(f"no numbered notebooks (NN_name.ipynb) in {source}")
    return paths


def write_copies(output_dir: Path, *, with_solutions: bool = False, keep_existing: bool = False,
                 source: Path = NOTEBOOKS) -> dict[Path, str]:
    """Write a copy of every notebook of ``source`` into ``output_dir``; return ``{copy: "written" | "kept"}``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for path in notebook_paths(source):
        target = output_dir / path.name
        if keep_existing and target.exists():
            done[target] = "kept"
            continue
        if with_solutions:
            shutil.copyfile(path, target)
        else:
            nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        done[target] = "written"
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "out" / "student")
    parser.add_argument("--with-solutions", action="store_true", help="plain copies, solutions included")
    parser.add_argument("--keep-existing", action="store_true",
                        help="never overwrite a copy that exists (a student's work)")
    args = parser.parse_args(argv)
    done = write_copies(args.output_dir, with_solutions=args.with_solutions, keep_existing=args.keep_existing)
    kind = "copies with solutions" if args.with_solutions else "student copies (solutions replaced by exercises)"
    written = [p.name for p, state in done.items() if state == "written"]
    kept = [p.name for p, state in done.items() if state == "kept"]
    if written:
        print(f"{args.output_dir}: wrote {len(written)} {kind}: {', '.join(written)}")
    if kept:
        print(f"{args.output_dir}: kept your copies of {', '.join(kept)} (delete one and run again for a fresh copy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
