"""The studies from a shell (the results workflow calls this; so can you, for one job):

    python -m tadlab.studies list [--profile full] [--seconds]            every results file, its jobs and seeds
                                                                          (--seconds: what its stored jobs took)
    python -m tadlab.studies run STUDY JOB --seed K [--profile full]      one job, one seed -> its part file
    python -m tadlab.studies merge STUDY NAME.json [--profile full]       the parts -> results/NAME.json
    python -m tadlab.studies ship [--profile full]                        the exported models -> tadlab/pretrained/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tadlab.experiments import PROFILES
from tadlab.studies import (exported_models, merge, plan, results_dir, run_job, shipped_dir,
                            stored_seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tadlab.studies", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every results file with its jobs and seeds")
    listing.add_argument("--seconds", action="store_true",
                         help="add the time the stored file's jobs took (one core each) and the sum over all files")
    one = commands.add_parser("run", help="run one job for one seed")
    one.add_argument("study"), one.add_argument("job")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    one.add_argument("--output", default=None, help="the part file (default: out/parts/PROFILE/STUDY/JOB/seedK.json)")
    gather = commands.add_parser("merge", help="gather the parts of one results file")
    gather.add_argument("study"), gather.add_argument("name")
    gather.add_argument("--output", default=None, help="default: results/ at full, out/results-PROFILE/ otherwise")
    shipping = commands.add_parser("ship", help="gather the models the jobs exported into tadlab/pretrained/")
    shipping.add_argument("--output", default=None, help="default: tadlab/pretrained/ at full, out/pretrained-PROFILE/")
    shipping.add_argument("--prune", action="store_true", help="remove the shipped models no part exported")
    for command in (listing, one, gather, shipping):
        command.add_argument("--profile", default="full", choices=PROFILES)
    args = parser.parse_args(argv)
    if args.command == "list":
        total = []
        for name, result in plan(args.profile):
            path = results_dir(args.profile) / result.name
            needs = f", needs {list(result.needs)}" if result.needs else ""
            line = (f"{path}  ({name}, {result.subset}): jobs {list(result.jobs)}, seeds "
                    f"{list(result.seeds_at(args.profile))}{needs}")
            if args.seconds:
                seconds = stored_seconds(path) if path.is_file() else []
                total += seconds
                line += (f"; stored: {len(seconds)} jobs, {sum(seconds) / 3600:.2f} h, longest "
                         f"{max(seconds) / 60:.1f} min" if seconds else "; stored: none")
            print(line)
        if args.seconds:
            print(f"in all: {len(total)} stored jobs, {sum(total) / 3600:.1f} h of one core (the jobs' own times, "
                  f"on the machine that made them)")
        return 0
    if args.command == "ship":
        from tadlab.pretrained import ship

        target = Path(args.output) if args.output else shipped_dir(args.profile)
        target.mkdir(parents=True, exist_ok=True)
        print(ship(exported_models(args.profile), target, prune=args.prune))
        return 0
    if args.command == "run":
        path = run_job(args.study, args.job, args.seed, args.profile, device=args.device, output=args.output)
    else:
        path = merge(args.study, args.name, args.profile, output=args.output)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
