"""scripts/official_eval.py and the workflow's external rules: what they refuse, and that the rules exist (and are in
`all`) only when their config keys are given. The official evaluator itself (Python 2, ActivityNet's repository) is
not needed: results/01_official_eval.json holds its run."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("official_eval", ROOT / "scripts" / "official_eval.py")
official_eval = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(official_eval)


def checkout(tmp_path, source="def evaluate(): pass\n"):
    """A folder shaped like ActivityNet's repository (only Evaluation/eval_detection.py)."""
    (tmp_path / "ActivityNet" / "Evaluation").mkdir(parents=True)
    (tmp_path / "ActivityNet" / "Evaluation" / "eval_detection.py").write_text(source)
    return tmp_path / "ActivityNet"


def fake_python(tmp_path, body):
    """An executable that stands for a Python interpreter: a shell script."""
    path = tmp_path / "python2.7"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def refusal(capsys, args, output):
    assert official_eval.main([*args, "--output", str(output)]) == 2
    assert not output.exists()  # nothing written, and no model run
    return capsys.readouterr().err


def test_the_stored_command_is_the_one_the_script_runs():
    stored = json.loads((ROOT / "results" / "01_official_eval.json").read_text())
    assert stored["command"] == official_eval.COMMAND and stored["file"] == "Evaluation/eval_detection.py"
    assert "check_status=False" in official_eval.EVALUATE and stored["largest_difference"] < 1e-12


def test_it_refuses_a_folder_without_the_evaluator(tmp_path, capsys):
    message = refusal(capsys, ["--activitynet", str(tmp_path), "--python2", sys.executable], tmp_path / "out.json")
    assert "no Evaluation/eval_detection.py in" in message and "github.com/activitynet/ActivityNet" in message


def test_it_reads_the_commit_with_git_and_refuses_a_changed_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path is found
    repository = checkout(tmp_path)
    message = refusal(capsys, ["--activitynet", str(repository)], tmp_path / "out.json")
    assert "cannot read the commit" in message and "pass --commit" in message
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "evaluator"]):
        subprocess.run(git + command, check=True, capture_output=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert official_eval.repository_commit(repository) == head
    (repository / "Evaluation" / "eval_detection.py").write_text("def evaluate(): return 1\n")
    message = refusal(capsys, ["--activitynet", str(repository)], tmp_path / "out.json")
    assert f"differs from commit {head[:12]}" in message


def test_it_refuses_an_interpreter_without_the_libraries_or_not_python2(tmp_path, capsys):
    repository = checkout(tmp_path)
    missing = fake_python(tmp_path, "echo 'ImportError: No module named pandas' >&2; exit 1")
    message = refusal(capsys, ["--activitynet", str(repository), "--commit", "abc", "--python2", missing],
                      tmp_path / "out.json")
    assert "cannot import numpy, pandas and joblib (ImportError: No module named pandas)" in message
    assert "--pythonpath" in message
    three = fake_python(tmp_path, """echo '{"python": "3.11.2", "numpy": "1", "pandas": "2", "joblib": "1"}'""")
    message = refusal(capsys, ["--activitynet", str(repository), "--commit", "abc", "--python2", three],
                      tmp_path / "out.json")
    assert "is Python 3.11.2; eval_detection.py needs Python 2.7" in message
    message = refusal(capsys, ["--activitynet", str(repository), "--commit", "abc", "--python2",
                               str(tmp_path / "nowhere")], tmp_path / "out.json")
    assert "cannot run" in message


def test_the_workflow_has_the_external_rules_only_with_their_keys(tmp_path):
    snakemake = str(Path(sys.executable).parent / "snakemake")
    if not Path(snakemake).is_file():
        message = "needs snakemake beside this Python (the test extra installs it: make test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = [snakemake, "-s", str(ROOT / "workflow" / "Snakefile"), "--nolock", "--directory", str(tmp_path)]
    env = {**os.environ, "TADLAB_OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}

    def snake(*args):
        done = subprocess.run(base + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout + done.stderr

    code, listed = snake("--list-rules", "--config", "profile=full")
    assert code == 0 and "ship" in listed, listed[-3000:]
    assert "official_eval" not in listed and "real_benchmarks" not in listed
    # with the keys, `all` asks for both files: forced, a dry run plans both rules with the given inputs
    repository = checkout(tmp_path)
    for name in ("thumos14.json", "anno.json"):
        (tmp_path / name).write_text("{}")
    code, planned = snake("--dry-run", "--printshellcmds", "--forcerun", "official_eval", "real_benchmarks",
                          "--config", "profile=full", f"python={sys.executable}", f"activitynet={repository}",
                          "python2=python2.7", f"thumos14={tmp_path / 'thumos14.json'}",
                          f"activitynet_annotations={tmp_path / 'anno.json'}")
    assert code == 0, planned[-3000:]
    assert f"--activitynet {repository} --python2 python2.7" in planned
    assert f"--output {ROOT / 'results' / '01_official_eval.json'}" in planned
    assert f"--output {ROOT / 'results' / 'real_benchmarks.json'}" in planned
    code, refused = snake("--list-rules", "--config", "profile=full", f"activitynet={repository}")
    assert code != 0 and "give both keys (missing ['python2'])" in refused
