"""Notebook 05's experiments: SP-TAD on the THUMOS-like world, the recipe on validation and the rows on testing.

    python scripts/sptad_experiments.py recipe   [--profile full] [--seeds 0]       -> results/05_recipe_validation.json
    python scripts/sptad_experiments.py headline [--profile full] [--seeds 0 1 2]   -> results/05_sptad.json
    python scripts/sptad_experiments.py ablations [--profile full] [--seeds 0]      -> results/05_ablations.json
    python scripts/sptad_experiments.py job VARIANT --seed K [--profile full]       -> results/05_parts/VARIANT.seedK.json
    python scripts/sptad_experiments.py merge [--parts DIR] [--out DIR]           -> results/05_stages.json, ...

The functions live in :mod:`tadlab.sptad_study`, which the notebook imports and runs at its own profile; at
``profile="full"`` they take too long for a notebook on a 2-core CPU, so this script runs them once and the
notebook prints the stored rows.

Per seed, on the world of that seed (``standard_world("thumos", profile, seed)``), measured on testing:
``headline`` and ``ablations`` are the first, 20-epoch rows (SP-TAD S = 4 without and with Soft-NMS on three
seeds; one-to-many and one stage on seed 0). ``job`` trains one :data:`VARIANTS` row (one change to the headline
model, :data:`LONG_EPOCHS` epochs) for one seed, so that two processes can share the two cores::

    for v in "S=4" "S=1" ...; do for k in 0 1 2; do echo "$v $k"; done; done |
        xargs -P 2 -L 1 sh -c 'python scripts/sptad_experiments.py job "$0" --seed "$1"'

and ``merge`` gathers the parts into ``05_stages.json`` (Table 6's stage sweep) and ``05_variants.json`` (matching,
N, pyramid: one change each; the context baseline); every row holds its per-length breakdown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tadlab.experiments import RESULTS_DIR
from tadlab.sptad_study import (EPOCHS, LONG_EPOCHS, MODEL, PARTS, RECIPE, TRAIN, ablation_rows, headline_rows,
                                job_rows, merge, recipe_rows)


def main(argv=None) -> None:
    from tadlab.experiments import run_seeds, save_runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("recipe", "headline", "ablations", "job", "merge"))
    parser.add_argument("variant", nargs="?", default=None, help="job: one of VARIANTS")
    parser.add_argument("--seed", type=int, default=None, help="job: the seed")
    parser.add_argument("--parts", default=str(PARTS), help="job: where its file goes; merge: where to read them")
    parser.add_argument("--profile", default="full", choices=("smoke", "ci", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--lr", type=float, default=None, help="instead of RECIPE['lr'] (headline, ablations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "merge":
        merge(args.profile, args.parts, Path(args.out) if args.out else RESULTS_DIR)
        return None
    if args.what == "job":
        if args.variant is None or args.seed is None:
            parser.error("job needs a VARIANT and --seed")
        runs = run_seeds(lambda s: job_rows(args.variant, s, args.profile, lr=args.lr), [args.seed])
        Path(args.parts).mkdir(parents=True, exist_ok=True)
        out = Path(args.parts) / f"{args.variant.replace(' ', '_')}.seed{args.seed}.json"
        save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile,
                  epochs=LONG_EPOCHS[args.profile], variant=args.variant)
        print(out, {name: round(row.mean(), 4) for name, row in runs.items()})
        return None
    if args.what == "recipe":
        seeds = args.seeds or [0]
        runs = run_seeds(lambda s: recipe_rows(s, args.profile), seeds, subset="validation")
        out = args.out or RESULTS_DIR / "05_recipe_validation.json"
    elif args.what == "headline":
        seeds = args.seeds or [0, 1, 2]
        runs = run_seeds(lambda s: headline_rows(s, args.profile, lr=args.lr), seeds)
        out = args.out or RESULTS_DIR / "05_sptad.json"
    elif args.what == "ablations":
        seeds = args.seeds or [0]
        runs = run_seeds(lambda s: ablation_rows(s, args.profile, lr=args.lr), seeds)
        out = args.out or RESULTS_DIR / "05_ablations.json"
    save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile, epochs=EPOCHS[args.profile],
              model=MODEL, train=TRAIN, lr=args.lr if args.lr is not None else RECIPE["lr"])
    from tadlab.experiments import results_table
    print(results_table(runs.values(), keys=("average_mAP", "duplicates")))


if __name__ == "__main__":
    sys.exit(main())
