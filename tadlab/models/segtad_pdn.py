"""SegTAD's proposal detection network (PDN, Sec. 3.3): score the proposals of a sparse pattern on the 1D-SSN's
output features, with a graph over proposals.

    Y (B, C', T) from the 1D-SSN, proposals (P, 2) of the sparse pattern (Eq. 8: start and length multiples of eta)
        -> proposal features: Y sampled by linear interpolation at ``samples`` points along each proposal
           (and ``context`` of its length beyond each end), flattened, one linear layer + ReLU -> D (B, P, C')
        -> proposal graph: edges to each proposal's top-K tIoU neighbours, weighted by cosine attention
        -> three edge convolutions (Eq. 1), or three per-proposal linear layers with ``graph=False`` (Table 7)
        -> one linear layer -> two logits per proposal: s1 (tIoU regression) and s2 (binary classification), Eq. 9

Training does not score all P proposals: it samples neighbourhoods (Sec. 3.3, after GraphSAGE) with
:func:`sample_neighbourhoods` and runs the graph on the sampled list only; inference scores all P.

Choices the paper leaves open, stated here:
- Feature sampling. The paper extracts proposal features "based on SGAlign [G-TAD]". We sample ``samples`` = 8
  points evenly over [s - context L, e + context L] (L = e - s; ``context`` = 0.25 is our choice, as BSN/BMN-style
  proposal features also look around a proposal; 0 samples the proposal alone), reading Y by linear interpolation
  (zero outside the video), and project the concatenation to C'. Without context, a proposal well inside a longer
  action sees only action features, as the action itself does.
- The training graph. On the sampled list, a node's neighbours are its best-tIoU proposals *that are in the list*,
  searched among its ``4K`` best overall: a seed's and a first-order neighbour's K are in the list by construction;
  a second-order neighbour keeps those of its candidates that are (possibly fewer than K; the mean then runs over
  those). Every neighbour is drawn from each node's global top-K, so the list has exactly M0 (1 + K + K^2) entries,
  repeats included (the paper says "from the remaining proposals"; repeats keep the count and the half-positive
  seeds exact). The loss then scores each distinct proposal of the list once, weighted by its count
  (:func:`deduplicate`): the same value as over the list with its repeats, and cheaper when the list is longer
  than the pattern.
- Seeds. M0 / 2 positive (tIoU > tau) and M0 / 2 negative seeds, drawn without replacement while there are enough
  and cyclically repeated otherwise; a video without any positive proposal draws all its seeds from the negatives.
"""
from __future__ import annotations

import torch
from torch import nn

from tadlab.labels import sparse_proposals
from tadlab.models.graph import EdgeConv
from tadlab.segments import segment_iou


def proposal_neighbour_table(proposals: torch.Tensor, width: int, chunk: int = 1024) -> torch.Tensor:
    """Each proposal's ``width`` highest-tIoU other proposals, best first (ties: the lower index).

    proposals (P, 2) -> (P, width) int64. Computed ``chunk`` rows at a time, so a large pattern (P = 7,875 at the
    paper's T = 1000, eta = 8) never holds the whole P x P tIoU matrix.
    """
    count = proposals.shape[0]
    if isinstance(width, bool) or not isinstance(width, int) or not 0 < width < count:
        raise ValueError(f"width must be an int in [1, P - 1] = [1, {count - 1}] (P = {count} proposals), "
                         f"got {width!r}")
    rows = []
    for first in range(0, count, chunk):
        iou = segment_iou(proposals[first:first + chunk], proposals)  # (chunk, P)
        own = torch.arange(first, first + iou.shape[0], device=proposals.device)
        iou[torch.arange(iou.shape[0], device=proposals.device), own] = -1.0  # never its own neighbour
        rows.append(torch.sort(iou, dim=1, descending=True, stable=True).indices[:, :width])
    return torch.cat(rows)


def sample_neighbourhoods(positive: torch.Tensor, table: torch.Tensor, seeds: int, k: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Neighbourhood sampling for PDN training (Sec. 3.3): seeds, their top-K, and the top-K of those.

    positive (B, P) bool (h_cls of each proposal), table (P, >= k) from :func:`proposal_neighbour_table` ->
    ids (B, M0 (1 + K + K^2)) int64 proposal indices, laid out as
    ``[seeds (M0) | first-order (M0 K): seed i's K at M0 + i K ... | second-order (M0 K^2): first-order j's K at
    M0 + M0 K + j K ...]``; seeds ``[0, M0 // 2)`` positive, the rest negative (see the module docstring).
    """
    if positive.dim() != 2 or positive.dtype != torch.bool or positive.shape[1] != table.shape[0]:
        raise ValueError(f"positive must be a bool tensor (B, P) with P = {table.shape[0]} (the table's rows), "
                         f"got {positive.dtype} {tuple(positive.shape)}")
    for name, value in (("seeds", seeds), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if k > table.shape[1]:
        raise ValueError(f"k must be at most the table's width {table.shape[1]}, got {k}")
    batch, count = positive.shape
    device = positive.device

    def draw(eligible: torch.Tensor, number: int) -> torch.Tensor:
        # Eligible proposals first, in random order; slot j takes the (j mod count)-th: no repeats while possible.
        keys = torch.rand(batch, count, generator=generator, device=device) + eligible.to(torch.float32)
        order = keys.argsort(dim=1, descending=True)
        available = eligible.sum(1, keepdim=True).clamp_min(1)
        slot = torch.arange(number, device=device).expand(batch, -1) % available
        return order.gather(1, slot)

    has_positive = positive.any(1, keepdim=True)
    has_negative = (~positive).any(1, keepdim=True)
    positive_pool = torch.where(has_positive, positive, ~positive)  # no positive at all: negative seeds
    negative_pool = torch.where(has_negative, ~positive, positive)
    chosen = torch.cat([draw(positive_pool, seeds // 2), draw(negative_pool, seeds - seeds // 2)], dim=1)
    first = table[chosen, :k].flatten(1)  # (B, M0 K)
    second = table[first, :k].flatten(1)  # (B, M0 K^2)
    return torch.cat([chosen, first, second], dim=1)


def deduplicate(ids: torch.Tensor, num_proposals: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampled list without its repeats: ids (B, S) -> unique (B, U) proposal indices (ascending) and their
    multiplicity (B, U) int64 in the list. Rows with fewer than U distinct proposals are padded with their first
    one at multiplicity 0 (a repeat, so it adds no node to the graph).

    Scoring the unique proposals and weighting each one's loss by its multiplicity gives exactly the loss over the
    list with its repeats (repeats have the same features and the same neighbours), at a fraction of the cost when
    the list is longer than the pattern (M0 = 50 and K = 4 list 1,050 entries; T = 100 and eta = 4 give P = 325).
    """
    multiplicity = torch.zeros(ids.shape[0], num_proposals, dtype=torch.int64, device=ids.device)
    multiplicity.scatter_add_(1, ids, torch.ones_like(ids))
    present = multiplicity > 0
    size = int(present.sum(1).max())
    order = torch.sort((~present).to(torch.uint8), dim=1, stable=True).indices[:, :size]  # present ones first
    keep = present.gather(1, order)
    return torch.where(keep, order, order[:, :1]), multiplicity.gather(1, order)


def local_neighbours(ids: torch.Tensor, table: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The proposal graph restricted to a list of proposals (the training graph on a sampled list).

    ids (B, S) proposal indices, table (P, W) -> neighbours (B, S, k) int64 *positions in the list* and valid
    (B, S, k) bool: each entry's first ``k`` table neighbours that occur in the list (their first occurrence),
    in table order. With ids = all proposals this is ``table[:, :k]``.
    """
    batch, size = ids.shape
    positions = torch.arange(size, device=ids.device).expand(batch, -1)
    first_position = ids.new_full((batch, table.shape[0]), size).scatter_reduce(1, ids, positions, reduce="amin")
    candidates = table[ids]  # (B, S, W) proposal indices
    candidate_position = first_position.gather(1, candidates.flatten(1)).view_as(candidates)
    present = candidate_position < size
    # A stable sort on "absent" moves the present candidates to the front and keeps their table order.
    pick = torch.sort((~present).to(torch.uint8), dim=-1, stable=True).indices[..., :k]
    valid = present.gather(-1, pick)
    neighbours = torch.where(valid, candidate_position.gather(-1, pick), torch.zeros_like(pick))
    return neighbours, valid


def proposal_points(proposals: torch.Tensor, samples: int, context: float) -> torch.Tensor:
    """proposals (..., 2) -> (..., samples) positions in snippet units: bin centres of ``samples`` equal bins over
    [s - context L, e + context L], L = e - s."""
    length = proposals[..., 1:] - proposals[..., :1]
    start = proposals[..., :1] - context * length
    step = (1 + 2 * context) * length / samples
    offsets = torch.arange(samples, device=proposals.device, dtype=proposals.dtype) + 0.5
    return start + offsets * step


def sample_along(features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of features (B, C, T) at positions (B, Q) in snippet units -> (B, Q, C).

    Snippet t's feature sits at its centre t + 0.5; values beyond the first and last centre fade linearly to zero
    one snippet out (the video is zero-padded), and are zero further out.
    """
    length = features.shape[2]
    padded = nn.functional.pad(features, (1, 1)).transpose(1, 2)  # (B, T + 2, C): zero rows at t = -1 and T
    index = positions - 0.5  # fractional snippet index
    below = torch.floor(index)
    weight = (index - below)[..., None]  # (B, Q, 1)
    below = below.long() + 1  # row in the padded sequence
    lo, hi = below.clamp(0, length + 1), (below + 1).clamp(0, length + 1)  # past the padding: a zero row

    video = torch.arange(features.shape[0], device=features.device)[:, None]
    return (1 - weight) * padded[video, lo] + weight * padded[video, hi]


class ProposalDetectionNetwork(nn.Module):
    """The PDN of Sec. 3.3 on a fixed sparse pattern (see the module docstring).

    Args:
        hidden: C', the width of Y and of the proposal features.
        num_snippets: T; the pattern is :func:`tadlab.labels.sparse_proposals` (T, ``eta``, ``max_duration``).
        eta: the step of Eq. 8 (8 at the paper's T = 1000). max_duration: the longest proposal (None: T).
        samples, context: the feature sampling (module docstring). graph: edge convolutions (True) or per-proposal
        linear layers (False, Table 7). k: neighbours per proposal (K = 4). layers: 3 in the paper.

    ``forward(features (B, C', T), ids (B, S) or None)`` -> logits (B, S, 2), S = P without ids: the logits of
    s1 (tIoU) and s2 (actionness), Eq. 9 before the sigmoid.
    """

    def __init__(self, hidden: int, num_snippets: int, eta: int = 8, max_duration: int | None = None,
                 samples: int = 8, context: float = 0.25, graph: bool = True, k: int = 4, layers: int = 3):
        super().__init__()
        self.samples, self.context, self.graph, self.k = samples, float(context), bool(graph), k
        proposals = sparse_proposals(num_snippets, eta, max_duration)
        self.register_buffer("proposals", proposals, persistent=False)  # (P, 2)
        width = min(4 * k, proposals.shape[0] - 1)
        if k > width:
            raise ValueError(f"the sparse pattern has only P = {proposals.shape[0]} proposals (T = {num_snippets}, "
                             f"eta = {eta}); pdn_k must be below P, got {k}")
        self.register_buffer("neighbour_table", proposal_neighbour_table(proposals, width), persistent=False)
        self.project = nn.Linear(samples * hidden, hidden)  # the sampled points, concatenated -> d_m in R^{C'}
        if self.graph:
            self.layers = nn.ModuleList(EdgeConv(hidden, hidden, attention=True) for _ in range(layers))
        else:  # Conv1D(k = 1) on each proposal alone: no cross-proposal information
            self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.score = nn.Linear(hidden, 2)  # W_det (Eq. 9)

    @property
    def num_proposals(self) -> int:
        return self.proposals.shape[0]

    def forward(self, features: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """features Y (B, C', T), ids (B, S) proposal indices or None (all P) -> logits (B, S, 2)."""
        batch, hidden, _ = features.shape
        if ids is None:  # inference: every proposal, the same positions in every video
            points = proposal_points(self.proposals.to(features.dtype), self.samples, self.context)  # (P, N)
            points = points.reshape(1, -1).expand(batch, -1)
            size = self.num_proposals
        else:
            points = proposal_points(self.proposals[ids].to(features.dtype), self.samples, self.context)  # (B,S,N)
            points = points.reshape(batch, -1)
            size = ids.shape[1]
        sampled = sample_along(features, points).reshape(batch, size, self.samples * hidden)  # (B, S, N C')
        nodes = torch.relu(self.project(sampled))  # D (B, S, C')
        if self.graph:
            if ids is None:
                neighbours, valid = self.neighbour_table[:, :self.k].expand(batch, -1, -1), None
            else:
                neighbours, valid = local_neighbours(ids, self.neighbour_table, self.k)
            for layer in self.layers:
                nodes = layer(nodes, neighbours, valid)
        else:
            for layer in self.layers:
                nodes = torch.relu(layer(nodes))
        return self.score(nodes)
