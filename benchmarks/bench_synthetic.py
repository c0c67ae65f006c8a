"""How long the synthetic world takes to generate: both presets, 100 / 500 / 1000 videos.

    python benchmarks/bench_synthetic.py [--repeats 5] [--seed 0]

Prints the best of ``repeats`` wall-clock times (after one warm-up call) and the feature memory.
"""
from __future__ import annotations

import argparse
import time

from tadlab.data.synthetic import PRESETS, make_world

SIZES = (100, 500, 1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    make_world("thumos", 10, seed=args.seed)  # warm-up: imports, first allocations
    print(f"{'preset':<8} {'videos':>7} {'T':>5} {'C':>4} {'best ms':>9} {'videos/s':>10} {'features MiB':>13}")
    for preset in sorted(PRESETS):
        for num_videos in SIZES:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                world = make_world(preset, num_videos, seed=args.seed)
                times.append(time.perf_counter() - start)
            best = min(times)
            mib = num_videos * world.feature_dim * world.num_snippets * 4 / 2**20
            print(f"{preset:<8} {num_videos:>7} {world.num_snippets:>5} {world.feature_dim:>4} {best * 1e3:>9.1f} "
                  f"{num_videos / best:>10.0f} {mib:>13.1f}")


if __name__ == "__main__":
    main()
