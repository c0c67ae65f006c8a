"""How many positives each label-assignment scheme gives every instance, and what it leaves out (notebook 02).

:func:`count_positives` applies every scheme of :mod:`tadlab.labels` to every video of a world and counts, per
instance, its positives: snippets (snippet labels), cells with tIoU > τ (BMN's map), proposals (SegTAD's sparse
pattern), anchors (one-to-many), pyramid points (ActionFormer's centre sampling) and queries (one-to-one: the real
Hungarian matching of :func:`tadlab.labels.set_match`, so a video with more instances than queries leaves some
without one). :func:`unowned_annotations` counts the annotations that own no snippet under the overlap rule, and why.

    counts = count_positives(standard_world("thumos", "ci", 0, nested_classes=0, duplicates=0.0))
    print(counts_table(counts))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tadlab.data.collate import collate_videos
from tadlab.labels import centre_sampling_assign, set_match, snippet_instances, sparse_proposals, tiou_assign

ANCHOR_LENGTHS = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # anchors of six lengths centred at every snippet
SEGTAD_STEP = (8, 1000)  # SegTAD's eta = 8 on L = 1000 snippets (Sec. 3.2.3 after Eq. 8; Implementations)
CHUNK = 64  # videos per batch: a (B, P, N) tIoU table of every BM-map cell stays a few hundred MB


@dataclass
class SchemeCount:
    """One scheme on one world: ``candidates`` places per video, ``positives`` (I,) per instance, ``lengths`` (I,)
    instance lengths in snippets, ``videos`` the number of videos."""

    world: str
    scheme: str
    candidates: int
    positives: torch.Tensor
    lengths: torch.Tensor
    videos: int

    @property
    def per_instance(self) -> float:
        return float(self.positives.double().mean())

    @property
    def negatives_per_video(self) -> float:
        return self.candidates - float(self.positives.sum()) / self.videos

    @property
    def share_without(self) -> float:
        """Share of the instances with no positive at all."""
        return float((self.positives == 0).double().mean())


def bm_depth(preset: str, num_snippets: int) -> int:
    """D, the BM map's longest proposal in snippets: the whole video on "anet" (BMN: D = T = 100 on ActivityNet),
    64 on "thumos" (BMN: 64 on THUMOS14)."""
    return num_snippets if preset == "anet" else min(64, num_snippets)


def segtad_equivalent_eta(num_snippets: int) -> int:
    """The step giving SegTAD's relative granularity (eta / L = 8 / 1000) at ``num_snippets``, at least 1."""
    eta, length = SEGTAD_STEP
    return max(1, round(eta * num_snippets / length))


def positives_per_instance(gt_index: torch.Tensor, num_instances: int) -> torch.Tensor:
    """gt_index (B, P) with -1 for negatives -> (B, N) the number of positives of each instance."""
    hits = torch.nn.functional.one_hot(gt_index + 1, num_instances + 1)[..., 1:]
    return hits.sum(dim=1)


def random_queries(num_queries: int, num_snippets: int, generator: torch.Generator) -> torch.Tensor:
    """(Q, 2) segments placed as SP-TAD places its proposals before training (Sec. 3.1.3, "placed randomly"):
    centres uniform over the video, widths uniform in [0.05, 1] of it, clipped to the video."""
    centre = torch.rand(num_queries, generator=generator)
    width = 0.05 + 0.95 * torch.rand(num_queries, generator=generator)
    return (torch.stack([centre - width / 2, centre + width / 2], 1).clamp(0, 1) * num_snippets)


def count_positives(world, *, etas=(4,), iou_threshold: float = 0.5, num_queries: int = 30, seed: int = 0,
                    device="cpu") -> list[SchemeCount]:
    """Every scheme's positives per instance on every video of ``world`` (one :class:`SchemeCount` per scheme,
    SegTAD's sparse pattern once per step in ``etas``). Overlapping annotations would share snippets and cells:
    count on a world without them (``nested_classes=0, duplicates=0.0``; :func:`unowned_annotations` counts what
    overlaps do). One-to-one matches ``num_queries`` random queries with equal class scores (the matching cost is
    then L1 + GIoU) by the Hungarian algorithm, per video."""
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 1:
        raise ValueError(f"num_queries must be a positive int, got {num_queries!r}")
    T, K = world.num_snippets, world.num_classes
    depth = bm_depth(world.preset, T)
    centres = torch.arange(T, device=device, dtype=torch.float32) + 0.5
    lengths = torch.tensor(ANCHOR_LENGTHS, device=device)
    anchors = torch.stack([centres[:, None] - lengths / 2, centres[:, None] + lengths / 2], -1).reshape(-1, 2)
    proposals = {"BM map (BMN)": sparse_proposals(T, 1, max_duration=depth, device=device)}
    proposals.update({f"sparse pattern η={eta} (SegTAD)": sparse_proposals(T, eta, device=device) for eta in etas})
    proposals["anchors, one-to-many"] = anchors
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, list] = {}
    for first in range(0, len(world.videos), CHUNK):
        batch = collate_videos(world.videos[first:first + CHUNK])
        segments, labels = batch["segments"].to(device), batch["labels"].to(device)
        real, n_max = labels >= 0, segments.shape[1]
        found.setdefault("snippet labels (GSMT, SegTAD)", []).append(
            positives_per_instance(snippet_instances(segments, T, labels), n_max)[real])
        for scheme, props in proposals.items():
            index = tiou_assign(props, segments, labels, K, iou_threshold, num_snippets=T)["gt_index"]
            found.setdefault(scheme, []).append(positives_per_instance(index, n_max)[real])
        index = centre_sampling_assign(segments, labels, T, K)["gt_index"]
        found.setdefault("centre sampling (ActionFormer)", []).append(positives_per_instance(index, n_max)[real])
        matched = torch.zeros_like(labels)
        for v in range(len(labels)):
            queries = random_queries(num_queries, T, generator).to(device)
            _, gt_index = set_match(torch.zeros(num_queries, K, device=device), queries, segments[v], labels[v], T)
            matched[v, gt_index] += 1
        found.setdefault(f"one-to-one (SP-TAD), Q={num_queries}", []).append(matched[real])
        found.setdefault("lengths", []).append((segments[..., 1] - segments[..., 0])[real])
    instance_lengths = torch.cat(found.pop("lengths")).cpu()
    points = len(centre_sampling_assign(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), T, K)["points"])
    candidates = {scheme: len(props) for scheme, props in proposals.items()}
    candidates.update({"snippet labels (GSMT, SegTAD)": T, "centre sampling (ActionFormer)": points,
                       f"one-to-one (SP-TAD), Q={num_queries}": num_queries})
    return [SchemeCount(world.preset, scheme, candidates[scheme], torch.cat(parts).cpu(), instance_lengths,
                        len(world.videos)) for scheme, parts in found.items()]


def counts_table(counts: list[SchemeCount]) -> str:
    """One line per world and scheme: candidates per video, positives per instance, negatives per video, and the
    share of instances without a positive."""
    lines = [f"{'world':7}{'scheme':36}{'candidates':>11}{'pos/instance':>14}{'neg/video':>11}{'no positive':>13}"]
    for c in counts:
        lines.append(f"{c.world:7}{c.scheme:36}{c.candidates:11d}{c.per_instance:14.1f}{c.negatives_per_video:11.1f}"
                     f"{c.share_without:12.1%}")
    return "\n".join(lines)


def loglog_slope(counts: list[SchemeCount], scheme: str) -> float:
    """Slope of log(positives) against log(instance length), over every world's instances with a positive."""
    import numpy as np

    chosen = [c for c in counts if c.scheme == scheme]
    if not chosen:
        raise ValueError(f"no counts of scheme {scheme!r}; schemes: {sorted({c.scheme for c in counts})}")
    positives = torch.cat([c.positives for c in chosen]).numpy()
    lengths = torch.cat([c.lengths for c in chosen]).numpy()
    keep = positives > 0
    if keep.sum() < 2 or np.ptp(np.log(positives[keep])) == 0:
        return 0.0
    return float(np.polyfit(np.log(lengths[keep]), np.log(positives[keep]), 1)[0])


def unowned_annotations(world) -> dict:
    """The annotations of ``world`` that own no snippet under the centre and overlap rules
    (:func:`tadlab.labels.snippet_instances`), by cause: ``"same segment"`` (another annotation has exactly its
    segment and a lower index, as a nested class's parent label has its child's), ``"inside a shorter one"`` (its
    snippet centres all belong to shorter overlapping annotations: a duplicate) and ``"no snippet centre"`` (too
    short to hold one). Also ``"annotations"`` and ``"videos"`` counted, and ``"classes"``: the unowned ones per
    class name."""
    causes = {"same segment": 0, "inside a shorter one": 0, "no snippet centre": 0}
    classes: dict[str, int] = {}
    total = 0
    T = world.num_snippets
    for video in world.videos:
        segments, labels = video["segments"], video["labels"]
        total += len(labels)
        owner = snippet_instances(segments, T, labels)
        owned = torch.bincount(owner[owner >= 0], minlength=len(labels))
        centres = torch.arange(T, dtype=segments.dtype) + 0.5
        for n in (owned == 0).nonzero()[:, 0].tolist():
            start, end = segments[n].tolist()
            if not ((centres >= start) & (centres < end)).any():
                cause = "no snippet centre"
            elif (segments[:n] == segments[n]).all(1).any():
                cause = "same segment"
            else:
                cause = "inside a shorter one"
            causes[cause] += 1
            name = world.class_names[int(labels[n])]
            classes[name] = classes.get(name, 0) + 1
    return {"videos": len(world.videos), "annotations": total, "unowned": sum(causes.values()), **causes,
            "classes": dict(sorted(classes.items()))}


def eta_granularity(num_snippets: int, eta: int) -> dict:
    """How coarse SegTAD's step ``eta`` is at ``num_snippets``, next to the paper's 8 on 1000: the step as a share
    of the video, that share over the paper's, and the step with the paper's share."""
    paper = SEGTAD_STEP[0] / SEGTAD_STEP[1]
    return {"T": num_snippets, "eta": eta, "share": eta / num_snippets, "times_paper": eta / num_snippets / paper,
            "equivalent_eta": segtad_equivalent_eta(num_snippets)}


__all__ = ["ANCHOR_LENGTHS", "SEGTAD_STEP", "SchemeCount", "bm_depth", "count_positives", "counts_table",
           "eta_granularity", "loglog_slope", "positives_per_instance", "random_queries", "segtad_equivalent_eta",
           "unowned_annotations"]
