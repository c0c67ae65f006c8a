"""SP-TAD cost and speed on this machine: parameters and FLOPs at a THUMOS-like size for several stage counts,
training throughput (videos/s, forward + matching + loss + backward + AdamW step) and inference latency per
video (forward + detect, without and with Soft-NMS).

    .venv/bin/python benchmarks/bench_sptad.py [--device cpu|cuda|auto] [--repeats 3] [--batch-size 8]
                                               [--sizes thumos,synthetic]

Sizes: "thumos" is a THUMOS-like window as tadlab.models.sptad.thumos_size_cost describes it (T = 256 snippets,
2048-d two-stream features, K = 20, N = 50, S = 4, d = 256); "synthetic" is the thumos preset of the synthetic
world (T = 128, C = 64, K = 10) with the CPU recipe's model (d = 64, N = 30, S = 4, d_h = 16, T' = 8).
"""
from __future__ import annotations

import argparse

import torch

from tadlab.models.sptad import SPTAD, thumos_size_cost
from tadlab.utils import resolve_device
from timing import random_batch, time_it

SIZES = {"thumos": (dict(feature_dim=2048, num_classes=20, num_snippets=256),
                    dict(hidden=256, num_proposals=50, num_stages=4, dynamic_dim=64, soi_points=16)),
         "synthetic": (dict(feature_dim=64, num_classes=10, num_snippets=128),
                       dict(hidden=64, heads=4, num_proposals=30, num_stages=4, dynamic_dim=16, soi_points=8,
                            center_features=True))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes of the speed table")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        parser.error(f"--sizes must name sizes among {sorted(SIZES)}, got {unknown}")
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)

    print("Parameters and FLOPs per window at a THUMOS-like size (T=256, C=2048, K=20, N=50, d=256)")
    print(f"{'model':<28}{'params (M)':>12}{'FLOPs (G)':>12}")
    for stages in (1, 2, 4, 6):
        cost = thumos_size_cost(num_stages=stages)
        print(f"{f'SP-TAD, {stages} stage(s)':<28}{cost['params_M']:>12.2f}{cost['flops_G']:>12.2f}")

    print(f"\nSpeed on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}, "
          f"median of {args.repeats}")
    print(f"{'size':<11}{'train videos/s':>16}{'infer ms/video':>16}{'detect ms/video':>17}{'+Soft-NMS ms':>14}")
    for name in sizes:
        data, options = SIZES[name]
        torch.manual_seed(0)
        model = SPTAD(data["feature_dim"], data["num_classes"], **options).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = random_batch(data["feature_dim"], data["num_snippets"], data["num_classes"], args.batch_size, device,
                             generator, instances=(3, 10))

        def train_step():
            terms = model.loss(model(batch["features"]), batch)
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()

        model.train()
        train_s = time_it(train_step, device, args.repeats)
        model.eval()
        one = batch["features"][:1]
        with torch.no_grad():
            outputs = model(one)
            forward_s = time_it(lambda: model(one), device, args.repeats)
            detect_s = time_it(lambda: model.detect(outputs), device, args.repeats)
            nms_s = time_it(lambda: model.detect(outputs, nms={}), device, args.repeats)
        print(f"{name:<11}{args.batch_size / train_s:>16.1f}{1e3 * (forward_s + detect_s):>16.2f}"
              f"{1e3 * detect_s:>17.2f}{1e3 * nms_s:>14.2f}")


if __name__ == "__main__":
    main()
