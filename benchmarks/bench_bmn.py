"""BMN and BMN + RRM: cost and speed at T = 100 snippets, D = 100 durations.

    .venv/bin/python benchmarks/bench_bmn.py [--device cpu|cuda|auto] [--iterations 1,5,10] [--repeats 3]

Prints, per model (BMN, then BMN + RRM at each iteration count):
- parameters and forward GFLOPs per video (``BMN.cost``: ``torch.utils.flop_counter``) at the paper's size (C = 400,
  BMN's widths, RRM's 64/32 channels; counted on the meta device, nothing runs) beside RCL Table 1's FLOPs column;
- at the timed size: training throughput (videos/s: forward + loss + backward + AdamW step), inference latency per
  video (forward of one video, and ``detect``: BSN candidates, scoring, Soft-NMS to 100), the activations kept for
  backward per video (exact, any device, summed by a saved-tensor hook) and, on CUDA, the peak allocated memory of
  a training step. The timed size is ``--size cpu`` (C = 64, ``bmn.CPU_CONFIG`` and ``rrm.CPU_CONFIG``, default on a
  CPU) or ``--size paper`` (default on CUDA).
The sampling tensor's memory (dense and sparse) is printed first.
"""
from __future__ import annotations

import argparse

import torch

from tadlab.models import BMN, RRM
from tadlab.models import bmn as bmn_module
from tadlab.models import rrm as rrm_module
from tadlab.models.bmn import boundary_matching_weights
from tadlab.utils import resolve_device
from timing import random_batch, time_it

RCL_TABLE1_FLOPS = {0: 98.3, 1: 100.0, 5: 106.9, 10: 115.5, 15: 124.1}  # RCL supp. Table 1 (BMN + RRM, ActivityNet)
SIZES = {"paper": dict(feature_dim=400, bmn=bmn_module.PAPER_CONFIG, rrm={}),
         "cpu": dict(feature_dim=64, bmn=bmn_module.CPU_CONFIG, rrm=rrm_module.CPU_CONFIG)}


def build(size: str, snippets: int, durations: int, iterations: int) -> BMN:
    spec = SIZES[size]
    refine = None
    if iterations:
        refine = RRM(spec["bmn"]["hidden_2d"], iterations=iterations, **spec["rrm"])
    return BMN(spec["feature_dim"], snippets, durations, **spec["bmn"], refine=refine)


def saved_activation_bytes(model: BMN, batch: dict) -> int:
    """Bytes of the tensors autograd keeps for backward in one training forward + loss (distinct storages)."""
    storages = {}

    def pack(tensor):
        if not tensor.is_sparse:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.loss(model(batch["features"]), batch)
    return sum(storages.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="timed size (default: cpu on a CPU)")
    parser.add_argument("--iterations", default="1,5,10", help="RRM iteration counts, comma-separated")
    parser.add_argument("--snippets", type=int, default=100, help="T")
    parser.add_argument("--durations", type=int, default=None, help="D (default T)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    size = args.size or ("paper" if device.type == "cuda" else "cpu")
    snippets, durations = args.snippets, args.durations or args.snippets
    counts = [0] + [int(n) for n in args.iterations.split(",") if n.strip()]
    generator = torch.Generator().manual_seed(0)

    paper = bmn_module.PAPER_CONFIG
    weights = boundary_matching_weights(snippets, durations, paper["num_samples"], paper["samples_per_bin"])
    cells = weights.shape[1] // paper["num_samples"]
    print(f"Sampling tensor at T={snippets}, D={durations}, N={paper['num_samples']}, "
          f"{paper['samples_per_bin']} samples per bin ({cells} valid cells)")
    print(f"  dense (T, N*P) float32: {snippets * weights.shape[1] * 4 / 1e6:.1f} MB;  sparse COO: "
          f"{weights._nnz():,} non-zeros, {weights._nnz() * 20 / 1e6:.1f} MB")

    print(f"\nParameters and forward FLOPs per video at the paper's size (C=400, T={snippets}, D={durations})")
    print(f"{'model':<22}{'params (M)':>12}{'GFLOPs':>10}{'RCL Table 1':>13}")
    largest = build("paper", snippets, durations, max(counts)).to("meta")  # counting only: nothing is computed
    for n in counts:
        cost = largest.cost(iterations=n) if n else BMN(400, snippets, durations, **paper).to("meta").cost()
        name = "BMN" if n == 0 else f"BMN + RRM x{n}"
        at_paper_grid = snippets == durations == 100
        reference = f"{RCL_TABLE1_FLOPS[n]:.1f}" if n in RCL_TABLE1_FLOPS and at_paper_grid else "-"
        print(f"{name:<22}{cost['params'] / 1e6:>12.2f}{cost['flops'] / 1e9:>10.2f}{reference:>13}")

    print(f"\nSpeed and memory on {device} ({torch.get_num_threads()} threads), size {size!r} "
          f"(C={SIZES[size]['feature_dim']}, T={snippets}, D={durations}), batch {args.batch_size}, "
          f"median of {args.repeats}")
    print(f"{'model':<16}{'GFLOPs':>8}{'train videos/s':>16}{'infer ms/video':>16}{'detect ms/video':>17}"
          f"{'activations MB/video':>22}{'peak MB':>10}")
    batch = random_batch(SIZES[size]["feature_dim"], snippets, 1, args.batch_size, device, generator)
    for n in counts:
        torch.manual_seed(0)
        model = build(size, snippets, durations, n).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step():
            terms = model.loss(model(batch["features"]), batch)
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()

        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_s = time_it(train_step, device, args.repeats)
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "-"
        activations = saved_activation_bytes(model, batch) / args.batch_size
        model.eval()
        one = batch["features"][:1]
        with torch.no_grad():
            outputs = model(one)
            forward_s = time_it(lambda: model(one), device, args.repeats)
            detect_s = time_it(lambda: model.detect(outputs), device, args.repeats)
        name = "BMN" if n == 0 else f"BMN + RRM x{n}"
        print(f"{name:<16}{model.cost()['flops'] / 1e9:>8.2f}{args.batch_size / train_s:>16.1f}"
              f"{1e3 * forward_s:>16.1f}{1e3 * detect_s:>17.1f}{activations / 2**20:>22.1f}{peak:>10}")


if __name__ == "__main__":
    main()
