"""ActionFormer cost and speed on this machine: parameters and forward FLOPs per video, training seconds per epoch
(``tadlab.train.fit`` on a synthetic world's training videos) and inference latency per video (forward + detect
with Soft-NMS), on one CPU thread by default.

    .venv/bin/python benchmarks/bench_actionformer.py [--device cpu|cuda|auto] [--threads 1] [--repeats 5]
                                                      [--epochs 2] [--batch-size 4] [--profile ci]
                                                      [--sizes thumos,anet] [--paper-snippets 2304]

Sizes: "thumos" and "anet" are the presets of the synthetic world at ``--profile`` (``standard_world(preset,
profile, 0)``: T = 256 and 100 snippets, C = 64, K = 20) with the CPU model (d = 64, 4 heads, window 19, two stem
blocks, six levels, centred features). The first table also gives the paper's THUMOS14 size (2048-d features,
K = 20, d = 512) over a window of ``--paper-snippets`` snippets (2304, the release's training length).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from tadlab.experiments import standard_world
from tadlab.models import ActionFormer
from tadlab.models.actionformer import thumos_size_cost
from tadlab.train import fit
from tadlab.utils import resolve_device
from timing import time_it

SIZES = ("thumos", "anet")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="inference timings per video (median)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs timed (seconds per epoch: the median)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--profile", default="ci", help="world profile: smoke, ci or full")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated presets of the speed table")
    parser.add_argument("--paper-snippets", type=int, default=2304, help="T of the paper-size cost line")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        parser.error(f"--sizes must name presets among {list(SIZES)}, got {unknown}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    print("Parameters and forward FLOPs per video")
    print(f"{'model':<44}{'params (M)':>12}{'GFLOPs':>10}")
    paper = thumos_size_cost(num_snippets=args.paper_snippets)
    print(f"{f'paper THUMOS14 size (C=2048, d=512, T={args.paper_snippets})':<44}{paper['params_M']:>12.2f}"
          f"{paper['flops_G']:>10.2f}")
    worlds = {name: standard_world(name, args.profile, 0) for name in sizes}
    for name, world in worlds.items():
        cost = ActionFormer(world.feature_dim, world.num_classes).cost(num_snippets=world.num_snippets)
        label = f"CPU model, {name} (C={world.feature_dim}, d=64, T={world.num_snippets})"
        print(f"{label:<44}{cost['params'] / 1e6:>12.2f}{cost['flops'] / 1e9:>10.3f}")

    print(f"\nSpeed on {device} ({torch.get_num_threads()} thread(s)), profile {args.profile!r}, "
          f"batch {args.batch_size}")
    print(f"{'preset':<8}{'train videos':>14}{'s/epoch':>10}{'infer ms/video':>16}{'forward ms':>12}{'detect ms':>11}")
    for name, world in worlds.items():
        torch.manual_seed(0)
        model = ActionFormer(world.feature_dim, world.num_classes, center_features=True)
        training = world.dataset("training")
        epoch_seconds = []
        for _ in range(args.epochs):  # one epoch per fit call, so every epoch is timed alone
            epoch_seconds.append(fit(model, training, epochs=1, batch_size=args.batch_size, lr=1e-3,
                                     clip_grad_norm=1.0, device=device, progress=False).seconds)
        model.eval()
        one = torch.stack([training[0]["features"]]).to(device)
        with torch.no_grad():
            outputs = model(one)
            forward = time_it(lambda: model(one), device, args.repeats)
            detect = time_it(lambda: model.detect(outputs), device, args.repeats)
        print(f"{name:<8}{len(training):>14}{statistics.median(epoch_seconds):>10.2f}"
              f"{1e3 * (forward + detect):>16.2f}{1e3 * forward:>12.2f}{1e3 * detect:>11.2f}")


if __name__ == "__main__":
    main()
