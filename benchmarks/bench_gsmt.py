"""GSMT cost and speed on this machine: parameters and FLOPs against the paper's Table 3, training throughput
(videos/s, forward + loss + backward + AdamW step) and inference latency per video (forward + detect).

    .venv/bin/python benchmarks/bench_gsmt.py [--device cpu|cuda|auto] [--repeats 5]

Sizes: "paper" is ActivityNet as the paper runs it (T = 100 snippets, 400-d two-stream features, K = 200,
hidden 512, one encoder layer: our guess at the unstated width); "synthetic" is the anet preset of the synthetic
world with the notebook's model (T = 100, C = 64, K = 10, hidden 64).
"""
from __future__ import annotations

import argparse

import torch

from tadlab.models.gsmt import GSMT, PAPER_COST
from tadlab.utils import resolve_device
from timing import random_batch, time_it

SIZES = {"paper": dict(feature_dim=400, num_classes=200, num_snippets=100, hidden=512),
         "synthetic": dict(feature_dim=64, num_classes=10, num_snippets=100, hidden=64)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)

    print("Parameters and FLOPs per video at the paper's ActivityNet size (T=100, C=400, K=200)")
    print(f"{'model':<34}{'params (M)':>12}{'FLOPs (G)':>12}")
    print(f"{'GSMT, paper Table 3':<34}{PAPER_COST['params_M']:>12.2f}{PAPER_COST['flops_G']:>12.2f}")
    for embedding, hidden in [("transformer", 256), ("transformer", 384), ("transformer", 512),
                              ("cnn", 512), ("mstcn", 512)]:
        cost = GSMT(400, 200, 100, hidden=hidden, embedding=embedding).cost()
        print(f"{f'ours, {embedding}, hidden {hidden}':<34}{cost['params'] / 1e6:>12.2f}{cost['flops'] / 1e9:>12.2f}")

    print(f"\nSpeed on {device} ({torch.get_num_threads()} threads), median of {args.repeats}")
    print(f"{'size':<11}{'train videos/s':>16}{'infer ms/video':>16}{'detect ms/video':>17}")
    for name, size in SIZES.items():
        torch.manual_seed(0)
        model = GSMT(**size).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = random_batch(size["feature_dim"], size["num_snippets"], size["num_classes"], args.batch_size,
                             device, generator)

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
        print(f"{name:<11}{args.batch_size / train_s:>16.1f}{1e3 * (forward_s + detect_s):>16.2f}"
              f"{1e3 * detect_s:>17.2f}")


if __name__ == "__main__":
    main()
