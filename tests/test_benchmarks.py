"""Every benchmark script still runs and prints its table (at a tiny size: this checks the scripts, not speed)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RUNS = {
    "bench_actionformer.py": (["--profile", "smoke", "--epochs", "1", "--repeats", "1", "--sizes", "anet",
                               "--paper-snippets", "64"],
                              ["paper THUMOS14 size", "CPU model, anet", "s/epoch", "infer ms/video"]),
    "bench_losses.py": (["--batch", "2", "--snippets", "12", "--repeats", "1"],
                        ["fast path", "kornia path", "plain soft-IoU loss", "PyTorch engine", "kornia / fast"]),
    "bench_eval.py": (["--videos", "20", "--per-video", "5", "--repeats", "1", "--reference"],
                      ["tadlab.eval, from files", "tadlab.eval, loaded data", "python -m tadlab.eval",
                       "official algorithm", "max |mAP difference|"]),
    "bench_proposals.py": (["--videos", "20", "--per-video", "5", "--repeats", "1", "--reference"],
                           ["tadlab.eval, loaded data", "tadlab.eval, from files", "official algorithm",
                            "max |recall difference| tadlab.eval vs reference"]),
    "bench_synthetic.py": (["--repeats", "1"], ["thumos", "anet"]),
    "bench_gsmt.py": (["--repeats", "1", "--batch-size", "2"], ["paper", "synthetic", "train videos/s"]),
    "bench_segtad.py": (["--repeats", "1", "--batch-size", "2", "--sizes", "anet"],
                        ["anet", "PDN without graph", "train videos/s", "detect seg. ms/video"]),
    "bench_bmn.py": (["--repeats", "1", "--batch-size", "2", "--snippets", "16", "--iterations", "1,2"],
                     ["Sampling tensor", "BMN + RRM x2", "train videos/s", "activations MB/video"]),
    "bench_sptad.py": (["--repeats", "1", "--batch-size", "2", "--sizes", "synthetic"],
                       ["SP-TAD, 4 stage(s)", "synthetic", "train videos/s", "+Soft-NMS ms"]),
}


@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_benchmark_script_runs_and_prints_its_table(script):
    arguments, expected = SMOKE_RUNS[script]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *arguments], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, f"{script} no longer prints {text!r}:\n{done.stdout}"


def test_every_benchmark_script_has_a_smoke_run():
    assert sorted(path.name for path in (ROOT / "benchmarks").glob("bench_*.py")) == sorted(SMOKE_RUNS)
