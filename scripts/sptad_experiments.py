"""Notebook 05's earlier-world rows: SP-TAD on whole videos, one change to the headline model per job.

    python scripts/sptad_experiments.py job VARIANT --seed K [--profile full]       -> results/05_parts/VARIANT.seedK.json
    python scripts/sptad_experiments.py merge [--parts DIR] [--out DIR]           -> results/05_stages.json, ...

The functions live in :mod:`tadlab.sptad_study`. ``job`` trains one :data:`VARIANTS` row (one change to the
headline model, :data:`LONG_EPOCHS` epochs) for one seed on ``standard_world("thumos", profile, seed)``, measured on
testing; ``merge`` gathers the parts into ``05_stages.json`` (Table 6's stage sweep) and ``05_variants.json``
(matching, N, pyramid: one change each; the context baseline); every row holds its per-length breakdown.

The stored files were made on the earlier worlds (80 testing videos, seeds 0-2) and are the last rows of notebook 05
not rebuilt by the results workflow (``workflow/Snakefile``); the learning rate, the headline and the clips are
workflow jobs of :mod:`tadlab.studies.sptad`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tadlab.experiments import RESULTS_DIR
from tadlab.sptad_study import LONG_EPOCHS, PARTS, job_rows, merge


def main(argv=None) -> None:
    from tadlab.experiments import run_seeds, save_runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("job", "merge"))
    parser.add_argument("variant", nargs="?", default=None, help="job: one of VARIANTS")
    parser.add_argument("--seed", type=int, default=None, help="job: the seed")
    parser.add_argument("--parts", default=str(PARTS), help="job: where its file goes; merge: where to read them")
    parser.add_argument("--profile", default="full", choices=("smoke", "ci", "full"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--lr", type=float, default=None, help="instead of RECIPE['lr']")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "merge":
        merge(args.profile, args.parts, Path(args.out) if args.out else RESULTS_DIR)
        return None
    if args.variant is None or args.seed is None:
        parser.error("job needs a VARIANT and --seed")
    runs = run_seeds(lambda s: job_rows(args.variant, s, args.profile, lr=args.lr), [args.seed])
    Path(args.parts).mkdir(parents=True, exist_ok=True)
    out = Path(args.parts) / f"{args.variant.replace(' ', '_')}.seed{args.seed}.json"
    save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile,
              epochs=LONG_EPOCHS[args.profile], variant=args.variant)
    print(out, {name: round(row.mean(), 4) for name, row in runs.items()})
    return None

if __name__ == "__main__":
    sys.exit(main())
