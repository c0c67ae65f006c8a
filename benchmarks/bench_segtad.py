"""SegTAD cost and speed on this machine: parameters and FLOPs (eval mode, the PDN scoring every proposal), training
throughput (videos/s: forward + loss with neighbourhood sampling + backward + AdamW step) and inference latency per
video (forward, then detect by the PDN or by the segmentation alone).

    .venv/bin/python benchmarks/bench_segtad.py [--device cpu|cuda|auto] [--repeats 5] [--batch-size 16]
                                                [--sizes paper anet thumos]   (both tables cover --sizes)

Sizes: "paper" is ActivityNet as the paper runs it (T = 1000 snippets, 400-d two-stream features, K = 200, eta = 8,
so P = 7,875 proposals; C' = 256 is our guess, the paper gives no width); "anet" and "thumos" are the synthetic
presets with the sanity recipe's model (C' = 64; eta = 4 at T = 100, P = 325; eta = 2 and proposals up to 32
snippets at T = 128, P = 904). The paper reports no cost for SegTAD.
"""
from __future__ import annotations

import argparse

import torch

from tadlab.models.segtad import SegTAD
from tadlab.utils import resolve_device
from timing import random_batch, time_it

SIZES = {"paper": dict(feature_dim=400, num_classes=200, num_snippets=1000, hidden=256, eta=8),
         "anet": dict(feature_dim=64, num_classes=10, num_snippets=100, hidden=64, eta=4),
         "thumos": dict(feature_dim=64, num_classes=10, num_snippets=128, hidden=64, eta=2, max_duration=32)}
VARIANTS = {"full": {}, "without GC": dict(graph=False), "without AC": dict(atrous=False),
            "PDN without graph": dict(pdn_graph=False)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)

    print("Parameters, FLOPs per video (eval: the PDN scores all P proposals) and P")
    print(f"{'size':<8}{'variant':<20}{'params (M)':>12}{'FLOPs (G)':>12}{'P':>8}")
    for name in args.sizes:
        for variant, switches in VARIANTS.items():
            model = SegTAD(**SIZES[name], **switches)
            cost = model.cost()
            print(f"{name:<8}{variant:<20}{cost['params'] / 1e6:>12.3f}{cost['flops'] / 1e9:>12.3f}"
                  f"{model.pdn.num_proposals:>8}")

    print(f"\nSpeed on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}, median of {args.repeats}")
    print(f"{'size':<8}{'train videos/s':>16}{'forward ms/video':>18}{'detect PDN ms/video':>21}"
          f"{'detect seg. ms/video':>22}")
    for name in args.sizes:
        size = SIZES[name]
        torch.manual_seed(0)
        model = SegTAD(**size).to(device)
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
            proposals_s = time_it(lambda: model.detect(outputs, decoding="proposals"), device, args.repeats)
            segmentation_s = time_it(lambda: model.detect(outputs, decoding="segmentation"), device, args.repeats)
        print(f"{name:<8}{args.batch_size / train_s:>16.1f}{1e3 * forward_s:>18.2f}{1e3 * proposals_s:>21.2f}"
              f"{1e3 * segmentation_s:>22.2f}")


if __name__ == "__main__":
    main()
