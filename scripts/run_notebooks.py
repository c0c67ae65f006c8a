"""Run the notebook sequence headless with papermill.

    python scripts/run_notebooks.py                  # every notebook, profile "ci", copies in out/notebooks/
    python scripts/run_notebooks.py --profile full   # the figures' size; also rewrites figures/
    python scripts/run_notebooks.py --profile smoke  # seconds each: only shows that every cell runs
    python scripts/run_notebooks.py --inplace 01     # re-execute notebooks/01_*.ipynb and store its outputs (for nbval)

Notebooks run with their own folder as working directory, as JupyterLab and nbval do.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebook_paths(selection: list[str]) -> list[Path]:
    """The numbered notebooks, or those whose name starts with one of ``selection``."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        chosen = [p for p in paths if any(p.name.startswith(s) for s in selection)]
        unknown = [s for s in selection if not any(p.name.startswith(s) for p in paths)]
        if unknown:
            raise SystemExit(f"no notebook in {NOTEBOOKS} starts with {unknown}; have {[p.name for p in paths]}")
        return chosen
    return paths


def strip_papermill_metadata(path: Path) -> None:
    """Drop papermill's per-cell timings and the saved widget state (large, and rebuilt when the notebook runs),
    so a re-run changes only what nbval compares."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="name prefixes, e.g. 01 03 (default: all)")
    parser.add_argument("--profile", choices=["smoke", "ci", "full"], default="ci")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "out" / "notebooks")
    parser.add_argument("--inplace", action="store_true",
                        help="execute with the stored defaults and write outputs back into notebooks/")
    args = parser.parse_args(argv)

    for path in notebook_paths(args.notebooks):
        start = time.perf_counter()
        if args.inplace:
            target, parameters = path, {}
        else:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            target = args.output_dir / path.name
            parameters = {"profile": args.profile, "save_figures": args.profile == "full"}
        papermill.execute_notebook(str(path), str(target), parameters=parameters, cwd=str(NOTEBOOKS),
                                   kernel_name="python3", progress_bar=False)
        if args.inplace:
            strip_papermill_metadata(target)
        print(f"{path.name}: {time.perf_counter() - start:.1f} s -> {target.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
