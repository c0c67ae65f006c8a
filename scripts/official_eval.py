"""Compare tadlab.eval with ActivityNet's official ``Evaluation/eval_detection.py`` and write
results/01_official_eval.json (notebook 01 prints it).

The official evaluator is Python 2 code (pandas, joblib) from ActivityNet's repository, run unchanged in a
subprocess; it is not part of tadlab. Get it and a Python 2.7 with the pinned libraries, then run this script:

    git clone https://github.com/activitynet/ActivityNet /tmp/ActivityNet
    python2.7 -m pip install --target /tmp/py2lib numpy==1.16.6 pandas==0.24.2 joblib==0.14.1
    python scripts/official_eval.py --activitynet /tmp/ActivityNet --python2 python2.7 --pythonpath /tmp/py2lib

(or ``.venv/bin/snakemake -s workflow/Snakefile --config profile=full activitynet=DIR python2=PATH ...``).

For each preset the shipped context model's testing detections and their ground truth are written by
``official_eval_inputs`` (which also scores them with tadlab.eval) into a temporary folder, the official
``ANETdetection`` scores the same two files (the command stored in the results file), and
``save_official_comparison`` stores both with their largest difference. The repository commit is read with git from
the checkout (or given with ``--commit``), and the environment string is measured from the interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tadlab import pretrained
from tadlab.studies.baselines import OFFICIAL_EVAL, PRESETS, TIOU, official_eval_inputs, save_official_comparison

ROOT = Path(__file__).resolve().parent.parent
PINS = "numpy==1.16.6 pandas==0.24.2 joblib==0.14.1"
LINSPACE = {"thumos": (0.3, 0.7, 5), "anet": (0.5, 0.95, 10)}  # each preset's thresholds (TIOU), as Python 2 gets them
THRESHOLDS = {preset: f"np.linspace{args}" for preset, args in LINSPACE.items()}
# What Python 2 runs, for each PRESET (THRESHOLDS replaced by the preset's), in a folder holding inputs/
EVALUATE = ("import json, numpy as np; from eval_detection import ANETdetection; "
            "d = ANETdetection('inputs/ground_truth_PRESET.json', 'inputs/results_PRESET.json', "
            "tiou_thresholds=THRESHOLDS, subset='testing', check_status=False); d.evaluate(); "
            "print(json.dumps({'average_mAP': float(d.average_mAP), 'mAP': d.mAP.tolist()}))")
COMMAND = (f"git clone {OFFICIAL_EVAL['repository']} && cd ActivityNet/Evaluation && python2.7 -m pip install "
           f"--target py2lib {PINS} && for each PRESET (thresholds thumos {THRESHOLDS['thumos']}, anet "
           f"{THRESHOLDS['anet']}), on the files written by python -c \"from tadlab.studies.baselines import "
           f"official_eval_inputs; official_eval_inputs('PRESET', 'inputs')\": PYTHONPATH=py2lib python2.7 -c "
           f"\"{EVALUATE}\"")
PROBE = ("import json, platform, numpy, pandas, joblib; print(json.dumps({'python': platform.python_version(), "
         "'numpy': numpy.__version__, 'pandas': pandas.__version__, 'joblib': joblib.__version__}))")


class Problem(Exception):
    """A missing or unusable input, said in one sentence."""


def _run(command, **kwargs):
    try:
        return subprocess.run(command, capture_output=True, text=True, **kwargs)
    except OSError as error:
        raise Problem(f"cannot run {command[0]!r}: {error}") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def evaluation_folder(activitynet: Path) -> Path:
    """The checkout's Evaluation/ folder, with eval_detection.py in it."""
    folder = activitynet / "Evaluation"
    if not (folder / "eval_detection.py").is_file():
        raise Problem(f"no Evaluation/eval_detection.py in {str(activitynet)!r}: --activitynet wants a checkout of "
                      f"{OFFICIAL_EVAL['repository']}")
    return folder


def repository_commit(activitynet: Path) -> str:
    """HEAD of the checkout, which must hold eval_detection.py as committed."""
    head = _run(["git", "-C", str(activitynet), "rev-parse", "HEAD"])
    if head.returncode != 0:
        raise Problem(f"cannot read the commit of {str(activitynet)!r} with git ({_last_line(head.stderr)}); "
                      f"pass --commit")
    changed = _run(["git", "-C", str(activitynet), "diff", "--quiet", "HEAD", "--", OFFICIAL_EVAL["file"]])
    if changed.returncode != 0:
        raise Problem(f"{OFFICIAL_EVAL['file']} in {str(activitynet)!r} differs from commit "
                      f"{head.stdout.strip()[:12]}: the comparison is with the file unchanged")
    return head.stdout.strip()


def python2_environment(python2: str, env: dict) -> dict:
    """The interpreter's version and its numpy, pandas and joblib versions (it must import them)."""
    probe = _run([python2, "-c", PROBE], env=env)
    if probe.returncode != 0:
        raise Problem(f"{python2!r} cannot import numpy, pandas and joblib ({_last_line(probe.stderr)}); install "
                      f"them ({PINS}) or pass their folder with --pythonpath")
    versions = json.loads(_last_line(probe.stdout))
    if not versions["python"].startswith("2.7"):
        raise Problem(f"{python2!r} is Python {versions['python']}; eval_detection.py needs Python 2.7")
    return versions


def official_metrics(python2: str, env: dict, folder: Path, preset: str) -> dict:
    """The official evaluator's average mAP and per-threshold mAP on folder/inputs/*_PRESET.json."""
    code = EVALUATE.replace("PRESET", preset).replace("THRESHOLDS", THRESHOLDS[preset])
    done = _run([python2, "-c", code], env=env, cwd=folder)
    if done.returncode != 0:
        raise Problem(f"eval_detection.py failed on {preset}: {_last_line(done.stderr)}")
    return json.loads(_last_line(done.stdout))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activitynet", type=Path, required=True, help="a checkout of ActivityNet's repository")
    parser.add_argument("--python2", default="python2.7", help="a Python 2.7 that imports numpy, pandas, joblib")
    parser.add_argument("--pythonpath", help="a folder holding those libraries (pip install --target)")
    parser.add_argument("--commit", help="the checkout's commit, when git cannot read it (not checked)")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "01_official_eval.json")
    args = parser.parse_args(argv)

    for preset in PRESETS:
        assert np.array_equal(np.linspace(*LINSPACE[preset]), TIOU[preset]), preset
    try:
        evaluation = evaluation_folder(args.activitynet)
        commit = args.commit or repository_commit(args.activitynet)
        checked = "the file unchanged" if not args.commit else "the file not checked against the commit"
        paths = [str(evaluation.resolve())] + ([str(Path(args.pythonpath).resolve())] if args.pythonpath else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        versions = python2_environment(args.python2, env)
        measured, inputs = {}, {}
        with tempfile.TemporaryDirectory() as folder:
            for preset in PRESETS:
                ours = official_eval_inputs(preset, Path(folder) / "inputs")
                measured[preset] = {"tadlab": ours, "official": official_metrics(args.python2, env, Path(folder),
                                                                                 preset)}
                decoder = pretrained.entry("context", preset, 0)["detect"]["decoder"]
                inputs[preset] = {"model": f"tadlab.pretrained 'context', seed 0 (decoder {decoder!r})",
                                  "world": f"standard_world({preset!r}, 'full', 0)", "subset": "testing",
                                  "videos": ours["videos"], "predictions": ours["predictions"]}
    except Problem as problem:
        print(f"official_eval.py: {problem}", file=sys.stderr)
        return 2
    environment = (f"Python {versions['python']}, numpy {versions['numpy']}, pandas {versions['pandas']}, "
                   f"joblib {versions['joblib']}; {checked}, check_status=False (no request for blocked videos)")
    path = save_official_comparison(args.output, measured, repository=OFFICIAL_EVAL["repository"], commit=commit,
                                    file=OFFICIAL_EVAL["file"], command=COMMAND, environment=environment,
                                    inputs=inputs)
    difference = json.loads(path.read_text())["largest_difference"]
    print(f"wrote {path}: largest difference, average or per-threshold mAP, both presets: {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
