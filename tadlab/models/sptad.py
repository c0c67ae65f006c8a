"""SP-TAD: query-based temporal action detection with sparse learnable proposals (Wu et al., 2021).

N learnable proposals, each a segment (normalised centre and width) with a feature vector, are refined by S
stacked detection heads. A head lets each proposal look only at the features inside its own segment (its
segment of interest, SoI) on a temporal feature pyramid, so high-resolution levels stay affordable; training
matches the N predictions one-to-one to the ground truth (Hungarian), so a duplicate is a false positive the loss
punishes and no NMS is needed.

    features (B, C, T)
      -> backbone: 1x1 projection, three stages (avg-pool by 2 + residual 1D convs) -> C1, C2, C3 at T/2, T/4, T/8
      -> pyramid: lateral 1x1 convs + top-down path, plus a max-pooled extra level -> P1..P4, strides 2, 4, 8, 16
         (``stride_one_level=True``: the 1x1 projection's output joins as P0, stride 1)
      -> N proposals: segments (N, 2) (centre, width) as fractions of T, features (N, d); the same for every video
      -> S stages (Sec. 3.1.3), each:
           features <- LN(features + MHSA(features))                relations among the proposals
           widen [s, e] by (e - s) / eta on both sides (eta = 5)    context around ambiguous boundaries
           level l = floor(l0 + log2(t / T)), t the widened length  Eq. 1: short segments read fine levels
           SoI (B, N, T', d): linear interpolation at T' points     1D SoI align, all proposals at once
           features <- LN(features + interaction(features, SoI))    two dynamic "1D convolutions" (Fig. 3)
           features <- LN(features + FFN(features))
           logits (B, N, K) = Linear(features); deltas (B, N, 2) = 3-layer FFN(features)
           segments <- (centre + width dc / 2, width exp(min(dw, log(100000 / 16)))); the next stage gets them detached
      -> video-level action head (Sec. 3.1.4, a switch): temporal average of the backbone's activations -> K scores

Choices the paper leaves open or that differ from it, stated here (the notebook repeats them):
- tadlab works on pre-extracted features, so a small 1D convolutional backbone on the features stands in for I3D:
  its intermediate outputs at temporal strides 2, 4, 8 (of the input snippets; the paper's strides are of frames)
  build the pyramid as I3D's last three stages do. The paper insists on intermediate outputs (Table 5): a pyramid
  built on the last layer alone ("High Level TFP", ``pyramid="last"``, strides 8..64 here) only adds coarser
  levels, so short actions lose their detail and it scores even below the single last level (``"single"``);
  intermediate outputs keep high temporal resolution where short actions need it.
- Each backbone stage average-pools by 2 and adds a residual pair of 3-wide convs, so cell i of a level of
  stride s covers snippets [i s, (i + 1) s) exactly (the geometry the SoI align assumes) and the features' class
  evidence passes the untrained backbone unchanged: I3D arrives pretrained, ours does not. The extra level
  max-pools P3 by 2, as the paper says.
- ``center_features=True`` (off by default; not in the paper, as GSMT's option) subtracts each video's
  per-channel mean over time. The synthetic world adds a per-video offset that a SoI feature alone cannot tell
  from class evidence: on the thumos preset (300 videos, the CPU recipe, 20 epochs, seed 1) average mAP (tIoU
  0.3:0.7) 0.15 without it, 0.65 with it.
- The video-level action head is on by default, as in the paper's full model (Table 7). Here it matters more
  than in the paper: I3D arrives pretrained on Kinetics, our backbone does not, and the head's video-level loss is
  what teaches it the classes early. Without the head (centred features, 20 epochs, thumos preset; batch 4 or 8,
  d_h 8 or 16, two seeds), 5 of 6 runs localised well (about 90% of instances had a proposal at tIoU >= 0.5) but
  picked the right class for about 1 instance in 10, chance (average mAP about 0.08): a linear probe on the
  pyramid showed the classes trained away. With the head, 3 of 3 seeds learned them (0.30, 0.65, 0.68); those
  runs' head pooled the plain temporal average (see :func:`video_features` for why it now pools activations).
  Its scores (``video_scores``) multiply the detection scores at inference unless
  ``detect(..., action_scores=False)``; :meth:`SPTAD.oracle_outputs` puts the ground truth's classes in their
  place, to measure what a perfect head would give.
- Sparse interaction, FFN and heads follow Sparse R-CNN, on which SP-TAD builds: LayerNorm + ReLU after each
  dynamic product, the flattened (T' d) result projected to d (+ LayerNorm + ReLU), post-norm residuals, dropout
  0, 8 attention heads and d_h = 64 (Sparse R-CNN's NHEADS and DIM_DYNAMIC; the paper names d_h but gives no
  value). Not Sparse R-CNN's: the FFN width, 4 d (Sparse R-CNN's DIM_FEEDFORWARD is 2048 = 8 d), and T' = 16
  points per SoI (the paper names T' but gives no value; Sparse R-CNN pools 7 x 7 = 49 per box). The
  classification branch is one linear layer (paper), its bias set for a prior probability of 0.01 (Sparse R-CNN);
  the boundary branch's last layer starts at zero, so an untrained stage returns its input segments (as Deformable
  DETR starts its box head); deltas weighted (2, 1) (Sparse R-CNN's (2, 2, 1, 1)).
- The width update clamps dw from above only, at log(100000 / 16), as Sparse R-CNN does (only exp's overflow is
  guarded). An earlier tadlab clamped it to +-log(1000 / 16): below -4.1 the gradient of dw is exactly zero, so a
  proposal that had to shrink more than 62.5 times (a 130-snippet proposal onto a 2-snippet instance) sat on the
  clamp for good (tests/test_gradient_flow.py shows the dead gradient; the outputs' widths are no longer clamped
  at all, only a stage's input at MIN_WIDTH, where no gradient crosses).
- Loss weights: the paper prints none; class 2, L1 5, GIoU 2 are Sparse R-CNN's (focal alpha 0.25, gamma 2), the
  action loss weight is 1. Every term is divided by N_pos, the number of positives (Eq. 3), as DETR divides by the
  number of instances (the two agree under one-to-one matching).
- Proposals start random (centres uniform over the video, widths uniform in [0.05, 1]: "placed randomly",
  Sec. 3.1.3) or, with ``proposal_init="whole"``, all as the whole video (Sparse R-CNN's default). Either way they
  are learned, but only through stage 1 (later stages receive detached segments), where the initial width w0 and
  stage 1's dw only act as their product w0 exp(dw): the boundary loss hardly tells them apart, so the initial
  widths stay near where they started (a mean of about 130 of 256 snippets on the thumos world) and stage 1 does
  the shrinking. On a world whose median instance is 3.2 snippets such a proposal, widened to ~180, reads the
  stride-8 level at T' points 11 (T' = 16) to 23 (T' = 8) snippets apart, where a short instance is barely seen.
- ``stride_one_level=True`` (off by default; not in the paper) adds a finest level P0 at stride 1, built from the
  1x1 projection of the features (C0) in the top-down path. Eq. 1 as printed (l0 = the highest index, now 4) then
  sends every widened length to a level of half the stride it read before, everything shorter than T / 8 to P0;
  without it, everything shorter than T / 4 (64 snippets of 256) reads P1 at stride 2, where the thumos world's
  median instance (3.2 snippets) spans fewer than two cells.
- ``assignment="one_to_many"`` (not in the paper, for comparison): the Hungarian matches plus every other
  proposal whose predicted segment overlaps an instance by tIoU > ``positive_iou`` (as anchor-based detectors
  assign); duplicates then learn to score high and detection needs NMS (thumos preset, the CPU recipe, seed 1:
  average mAP 0.28 without NMS and 0.61 with Soft-NMS, against 0.65 and 0.69 with one-to-one matching).
- The action head averages each backbone output's ReLU activations over time (features have no space to pool;
  :func:`video_features`), concatenates them and applies one linear layer; it trains with binary cross-entropy
  against the classes present in the video.

The mAPs quoted above were measured on the synthetic world before its presets took the real benchmarks' statistics.
On today's ``thumos`` preset (instances of a few snippets, a median of 12 per 256-snippet video) SP-TAD fed whole
videos scores 0.052 ± 0.024 average mAP (60 epochs, 5 seeds, 1800 testing videos each; notebook 05); fed 32-snippet
clips as the paper feeds THUMOS14 (:mod:`tadlab.windows`, :func:`tadlab.studies.sptad.train_windows`: the paper's
25.6 s clip is 32 of this world's 0.8 s snippets) it scores 0.258 ± 0.016 on the same worlds and seeds (lr 3e-3,
chosen on validation; 0.151 ± 0.022 at the 1e-3 of a ci-sized choice).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.models.blocks import forward_cost
from tadlab.utils import check_choice

DELTA_WEIGHTS = (2.0, 1.0)  # Sparse R-CNN's box-delta weights (2, 2, 1, 1) in 1D: centre, width
# Sparse R-CNN's _DEFAULT_SCALE_CLAMP: the largest dw, clamped from above only (exp must not overflow). A lower clamp
# would cut the gradient of every width it holds: a proposal that must shrink past it could never learn to.
SCALE_CLAMP = math.log(100000.0 / 16)
MIN_WIDTH = 1e-3  # a stage's input proposal is never narrower than this fraction of T (outputs are not clamped)
PYRAMIDS = {"intermediate": (2, 4, 8, 16), "last": (8, 16, 32, 64), "single": (8,)}  # level strides (snippets)


@dataclass(frozen=True)
class SPTADConfig:
    """Every knob of :class:`SPTAD` beyond the data's sizes; ``SPTAD(C, K, **overrides)`` replaces some."""

    hidden: int = 256                 # d: width of the pyramid, proposal features and heads (paper: 256, Sec. 3.1.2)
    num_proposals: int = 50           # N (paper: 50 THUMOS, 100 ActivityNet; more than any video's instances)
    num_stages: int = 4               # S stacked heads (Table 6: 4 is best)
    heads: int = 8                    # attention heads among proposals (Sparse R-CNN's; the paper gives none)
    dynamic_dim: int = 64             # d_h of the d x d_h and d_h x d matrices (Sparse R-CNN's; the paper: none)
    soi_points: int = 16              # T', points of the 1D SoI align (tadlab's; the paper gives none)
    expand_ratio: float = 5.0         # eta: widen a segment by length / eta on both sides (paper: 5)
    top_level: int | None = None      # l0 of Eq. 1; None = the highest level index
    pyramid: str = "intermediate"     # "intermediate" (SP-TAD), "last" or "single" (Table 5's ablations)
    stride_one_level: bool = False    # "intermediate" + a finest level P0 at stride 1 (not in the paper; see above)
    ffn_dim: int | None = None        # FFN width; None = 4 d (Sparse R-CNN: 8 d; the paper gives none)
    dropout: float = 0.0
    prior_prob: float = 0.01          # initial foreground probability of every class (Sparse R-CNN's)
    proposal_init: str = "random"     # "random" or "whole"
    action_head: bool = True          # the video-level classification head of Sec. 3.1.4 (see above)
    center_features: bool = False     # subtract each video's per-channel mean over time first (not in the paper)
    assignment: str = "one_to_one"    # "one_to_one" (Hungarian) or "one_to_many"
    positive_iou: float = 0.5         # tIoU above which a proposal is a positive under "one_to_many"
    class_weight: float = 2.0         # lambda_cls, in the matching cost and the loss
    l1_weight: float = 5.0            # lambda_L1
    giou_weight: float = 2.0          # lambda_giou
    action_weight: float = 1.0        # lambda_act
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def __post_init__(self):
        for name in ("hidden", "num_proposals", "num_stages", "heads", "dynamic_dim", "soi_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads, got hidden={self.hidden}, heads={self.heads}")
        check_choice("pyramid", self.pyramid, set(PYRAMIDS))
        check_choice("proposal_init", self.proposal_init, {"random", "whole"})
        check_choice("assignment", self.assignment, {"one_to_one", "one_to_many"})
        if not isinstance(self.stride_one_level, bool):
            raise TypeError(f"stride_one_level must be a bool, got {self.stride_one_level!r}")
        if self.stride_one_level and self.pyramid != "intermediate":
            raise ValueError(f"stride_one_level=True needs pyramid='intermediate' (it adds the stem's output below "
                             f"C1's level), got pyramid={self.pyramid!r}")
        levels = len(self.strides)
        if self.top_level is not None and (isinstance(self.top_level, bool) or not isinstance(self.top_level, int)
                                           or not 0 <= self.top_level < levels):
            raise ValueError(f"top_level must be None or an int in [0, {levels - 1}], got {self.top_level!r}")
        if self.ffn_dim is not None and (not isinstance(self.ffn_dim, int) or self.ffn_dim < 1):
            raise ValueError(f"ffn_dim must be None or a positive int, got {self.ffn_dim!r}")
        checks = [("expand_ratio", self.expand_ratio > 0, "> 0"), ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                  ("prior_prob", 0 < self.prior_prob < 1, "in (0, 1)"),
                  ("positive_iou", 0 <= self.positive_iou < 1, "in [0, 1)"),
                  ("focal_alpha", 0 <= self.focal_alpha <= 1, "in [0, 1]"),
                  ("focal_gamma", self.focal_gamma >= 0, ">= 0")]
        checks += [(name, getattr(self, name) >= 0, ">= 0") for name in ("class_weight", "l1_weight", "giou_weight",
                                                                          "action_weight")]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    @property
    def strides(self) -> tuple:
        """The pyramid levels' strides in snippets, finest first (cell i of a level of stride s: [i s, (i+1) s))."""
        return ((1,) if self.stride_one_level else ()) + PYRAMIDS[self.pyramid]


# ------------------------------------------------------------------------------------------ the two operations
def pyramid_level(lengths: torch.Tensor, num_snippets: int, num_levels: int, top_level: int | None = None):
    """Eq. 1: the level ``l = floor(l0 + log2(t / T))``, clamped to [0, num_levels - 1], of segments ``t`` long.

    lengths (...) in snippet units -> (...) int64. l0 (default ``num_levels - 1``, the highest index) is the
    level of a segment as long as the video; each halving of the length goes one level finer.
    """
    top = num_levels - 1 if top_level is None else top_level
    ratio = (lengths / num_snippets).clamp_min(torch.finfo(lengths.dtype).tiny)
    return torch.floor(top + torch.log2(ratio)).clamp(0, num_levels - 1).to(torch.int64)


def soi_align(levels: list[torch.Tensor], strides, segments: torch.Tensor, level_index: torch.Tensor,
              num_points: int) -> torch.Tensor:
    """1D SoI align: each segment's features on its pyramid level, linearly interpolated at ``num_points`` points.

    levels: L tensors (B, d, T_l), cell i of level l covering snippets [i s_l, (i + 1) s_l), s_l = ``strides[l]``;
    segments (B, N, 2) [start, end) in snippet units; level_index (B, N) int64 -> (B, N, T', d).
    Point j sits at start + (j + 0.5)(end - start) / T' (bin centres); in level coordinates u = x / s_l - 0.5
    (cell i's centre at u = i) it reads (1 - w) f[floor(u)] + w f[floor(u) + 1], w = u - floor(u), with zeros
    outside the level. Batched over videos and proposals (one gather), differentiable in features and segments.
    """
    batch, dim = levels[0].shape[:2]
    sizes = [level.shape[-1] for level in levels]
    longest = max(sizes)
    # All levels in one table of rows (B * L * T_max, d), so one gather serves every proposal whatever its level.
    rows = torch.stack([F.pad(level, (0, longest - level.shape[-1])) for level in levels], dim=1)
    rows = rows.transpose(2, 3).reshape(-1, dim)
    stride = torch.as_tensor(strides, dtype=segments.dtype, device=segments.device)[level_index]  # (B, N)
    size = torch.as_tensor(sizes, device=segments.device)[level_index]  # (B, N)
    fraction = (torch.arange(num_points, device=segments.device, dtype=segments.dtype) + 0.5) / num_points
    start, end = segments[..., :1], segments[..., 1:]
    u = (start + fraction * (end - start)) / stride[..., None] - 0.5  # (B, N, T') level coordinates
    left = torch.floor(u)
    right_weight = u - left
    left = left.to(torch.int64)
    base = (torch.arange(batch, device=segments.device)[:, None] * len(levels) + level_index) * longest  # (B, N)

    def tap(index, weight):  # the value at integer cell ``index`` times its interpolation weight
        inside = (index >= 0) & (index < size[..., None])
        values = rows[(base[..., None] + index.clamp(0, longest - 1)).reshape(-1)].reshape(*index.shape, dim)
        return values * (weight * inside)[..., None]

    return tap(left, 1 - right_weight) + tap(left + 1, right_weight)


def video_features(backbone: list[torch.Tensor]) -> torch.Tensor:
    """What the action head classifies (Sec. 3.1.4): the temporal average of each backbone output's activations,
    concatenated. backbone: L tensors (B, d, T_l) -> (B, L d).

    The paper average-pools I3D's three stage outputs, which are ReLU activations (every branch of an I3D block
    ends in one), so a channel's average measures how much of the video shows its pattern. Our stages end in a
    linear residual sum (so the detection path sees the input's evidence unchanged), and with centred features
    (``center_features``) the linear part of that sum averages to the same vector in every video: the stem's
    temporal mean is its bias (to 3e-8), and only the residual convs' small non-linear part varies (untrained, on
    the thumos world: 0.001 across videos against 0.08 for the vector itself), while its gradient never reaches
    the stem (the mean of a centred input is 0). The ReLU before the average restores I3D's kind of output.
    """
    return torch.cat([F.relu(level).mean(dim=-1) for level in backbone], dim=-1)


# ------------------------------------------------------------------------------------------ modules
class DownStage(nn.Module):
    """One backbone stage, (B, d, T_in) -> (B, d, ceil(T_in / 2)): average-pool by 2, then a residual pair of
    3-wide convs.

    The residual path carries the pooled input features through unchanged, so the class evidence the pre-extracted
    features already hold survives a randomly initialised backbone (as I3D's pretrained stages keep theirs).
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(hidden, hidden, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool1d(x, 2, ceil_mode=True)  # cell i covers input cells 2i, 2i + 1 exactly
        return x + self.convs(x)


class TemporalPyramid(nn.Module):
    """Backbone + temporal feature pyramid (Sec. 3.1.1-3.1.2): (B, C, T) -> levels [(B, d, T_l)], backbone outputs.

    A 1x1 projection to d (the stem, C0 at stride 1), then three :class:`DownStage` give C1, C2, C3 at strides 2,
    4, 8. ``"intermediate"``: lateral 1x1 convs on C1..C3, a top-down path (nearest upsampling, sum), a 3-wide output
    conv per level and a max-pooled P4: strides 2, 4, 8, 16; with ``stride_one=True`` C0 joins the top-down path
    as a finest level P0 (strides 1, 2, 4, 8, 16). ``"last"``: the same pyramid on C3 and two further downsampled
    copies of it (strides 8, 16, 32, 64). ``"single"``: C3 alone (stride 8). The backbone outputs returned are
    C1, C2, C3 whatever the pyramid.
    """

    def __init__(self, feature_dim: int, hidden: int, pyramid: str, stride_one: bool = False):
        super().__init__()
        if stride_one and pyramid != "intermediate":
            raise ValueError(f"stride_one=True needs pyramid='intermediate', got {pyramid!r}")
        self.kind, self.stride_one = pyramid, stride_one
        self.strides = ((1,) if stride_one else ()) + PYRAMIDS[pyramid]
        self.stem = nn.Conv1d(feature_dim, hidden, 1)
        self.backbone = nn.ModuleList(DownStage(hidden) for _ in range(3))
        self.extra = nn.ModuleList(DownStage(hidden) for _ in range(2 if pyramid == "last" else 0))
        inputs = 1 if pyramid == "single" else 3 + stride_one
        self.lateral = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in range(inputs))
        self.output = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(inputs))

    def forward(self, features: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        stem = x = self.stem(features)  # C0 (B, d, T)
        backbone = []
        for stage in self.backbone:
            x = stage(x)
            backbone.append(x)  # C1 (B, d, T/2), C2 (B, d, T/4), C3 (B, d, T/8)
        if self.kind == "single":
            return [self.output[0](self.lateral[0](backbone[-1]))], backbone
        inputs = backbone if self.kind == "intermediate" else [backbone[-1]]
        if self.stride_one:  # the stem's output: cell i is snippet i, the finest level the features allow
            inputs = [stem] + inputs
        for stage in self.extra:  # "last": coarser copies of C3 only
            inputs = inputs + [stage(inputs[-1])]
        merged = [self.lateral[-1](inputs[-1])]
        for lateral, fine in zip(reversed(self.lateral[:-1]), reversed(inputs[:-1])):
            coarse = merged[0].repeat_interleave(2, dim=-1)[..., : fine.shape[-1]]  # cell i takes coarse cell i // 2
            merged.insert(0, lateral(fine) + coarse)
        levels = [conv(level) for conv, level in zip(self.output, merged)]
        return levels + [F.max_pool1d(levels[-1], 2, ceil_mode=True)], backbone


class SparseInteraction(nn.Module):
    """Fig. 3: each proposal feature (d,) generates a d x d_h and a d_h x d matrix and applies them to its own SoI
    feature (T', d) as two 1D convolutions of kernel 1 (matrix products over the T' positions), each followed by
    LayerNorm and ReLU; the (T', d) result is flattened and projected back to d. No proposal sees another's SoI.

    proposals (B, N, d), soi (B, N, T', d) -> (B, N, d).
    """

    def __init__(self, hidden: int, dynamic_dim: int, soi_points: int):
        super().__init__()
        self.hidden, self.dynamic_dim = hidden, dynamic_dim
        self.generate = nn.Linear(hidden, 2 * hidden * dynamic_dim)  # both dynamic matrices from one feature
        self.norm1, self.norm2 = nn.LayerNorm(dynamic_dim), nn.LayerNorm(hidden)
        self.project = nn.Sequential(nn.Linear(soi_points * hidden, hidden), nn.LayerNorm(hidden), nn.ReLU())

    def forward(self, proposals: torch.Tensor, soi: torch.Tensor) -> torch.Tensor:
        d, dh = self.hidden, self.dynamic_dim
        parameters = self.generate(proposals)  # (B, N, 2 d dh)
        first = parameters[..., : d * dh].unflatten(-1, (d, dh))  # (B, N, d, dh)
        second = parameters[..., d * dh:].unflatten(-1, (dh, d))  # (B, N, dh, d)
        x = F.relu(self.norm1(soi @ first))  # (B, N, T', dh)
        x = F.relu(self.norm2(x @ second))  # (B, N, T', d)
        return self.project(x.flatten(-2))  # (B, N, d)


class DetectionStage(nn.Module):
    """One action detection head (Sec. 3.1.3): segments (B, N, 2) (centre, width) in fractions of T and proposal
    features (B, N, d) in -> class logits (B, N, K), refined segments, refined features, the levels read (B, N)."""

    def __init__(self, config: SPTADConfig, num_classes: int, strides):
        super().__init__()
        d, self.config, self.strides = config.hidden, config, strides
        self.attention = nn.MultiheadAttention(d, config.heads, dropout=config.dropout, batch_first=True)
        self.interaction = SparseInteraction(d, config.dynamic_dim, config.soi_points)
        ffn = config.ffn_dim or 4 * d
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(ffn, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(d, num_classes)
        nn.init.constant_(self.classifier.bias, -math.log((1 - config.prior_prob) / config.prior_prob))
        self.regressor = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2))
        nn.init.zeros_(self.regressor[-1].weight), nn.init.zeros_(self.regressor[-1].bias)

    def forward(self, levels, segments, features, num_snippets: int):
        attended, _ = self.attention(features, features, features, need_weights=False)
        features = self.norms[0](features + self.dropout(attended))
        centre, width = segments.unbind(-1)
        half = width * (0.5 + 1 / self.config.expand_ratio)  # widened by width / eta on both sides
        widened = torch.stack([centre - half, centre + half], dim=-1) * num_snippets  # (B, N, 2) snippets
        level = pyramid_level(2 * half * num_snippets, num_snippets, len(self.strides), self.config.top_level)
        soi = soi_align(levels, self.strides, widened, level, self.config.soi_points)  # (B, N, T', d)
        features = self.norms[1](features + self.dropout(self.interaction(features, soi)))
        features = self.norms[2](features + self.dropout(self.ffn(features)))
        deltas = self.regressor(features)  # (B, N, 2): dc, dw
        centre = centre + deltas[..., 0] / DELTA_WEIGHTS[0] * width
        width = width * torch.exp((deltas[..., 1] / DELTA_WEIGHTS[1]).clamp(max=SCALE_CLAMP))  # no lower clamp
        return self.classifier(features), torch.stack([centre, width], -1), features, level


# ------------------------------------------------------------------------------------------ the detector
class SPTAD(nn.Module):
    """SP-TAD on pre-extracted features; serves any number of snippets T (proposals are fractions of T).

    Args:
        feature_dim: C, the input feature width. num_classes: K action classes (no background class: sigmoid).
        config: an :class:`SPTADConfig`; ``overrides`` replace its fields (``SPTAD(64, 10, num_stages=2)``).

    ``forward(features (B, C, T))`` returns a dict:
        ``logits`` (B, N, K) and ``segments`` (B, N, 2) [start, end) in snippet units, unclamped: the last stage;
        ``stage_logits`` (S, B, N, K), ``stage_segments`` (S, B, N, 2): every stage's output;
        ``initial_segments`` (B, N, 2): the learned proposals; ``levels`` (S, B, N) int64: the pyramid level each
        proposal read at each stage; ``video_logits`` (B, K) and ``video_scores`` (B, K) = their sigmoid with the
        action head; ``num_snippets``: T.
    """

    def __init__(self, feature_dim: int, num_classes: int, config: SPTADConfig | None = None, **overrides):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if config is not None and not isinstance(config, SPTADConfig):
            raise TypeError(f"config must be an SPTADConfig or None, got {type(config).__name__}")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(SPTADConfig)})
        if unknown:
            raise TypeError(f"unknown SPTAD options {unknown}; see SPTADConfig for the fields")
        self.config = config = dataclasses.replace(config or SPTADConfig(), **overrides)
        self.feature_dim, self.num_classes = feature_dim, num_classes
        d, n = config.hidden, config.num_proposals

        self.pyramid = TemporalPyramid(feature_dim, d, config.pyramid, config.stride_one_level)
        if config.proposal_init == "whole":
            initial = torch.tensor([0.5, 1.0]).repeat(n, 1)
        else:
            initial = torch.stack([torch.rand(n), 0.05 + 0.95 * torch.rand(n)], dim=1)
        self.proposal_segments = nn.Parameter(initial)  # (N, 2): centre, width as fractions of T
        self.proposal_features = nn.Parameter(torch.randn(n, d))  # (N, d), as Sparse R-CNN's nn.Embedding
        self.stages = nn.ModuleList(DetectionStage(config, num_classes, self.pyramid.strides)
                                    for _ in range(config.num_stages))
        self.action_classifier = nn.Linear(3 * d, num_classes) if config.action_head else None

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor) -> dict:
        """``features (B, C, T)`` -> dict (see the class docstring)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.feature_dim or features.shape[2] < 1:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, T) (B, feature_dim, snippets), "
                             f"got {tuple(features.shape)}")
        batch, num_snippets = features.shape[0], features.shape[2]
        if self.config.center_features:  # removes a per-video constant offset, as GSMT's option does
            features = features - features.mean(dim=2, keepdim=True)
        levels, backbone = self.pyramid(features)
        initial = _min_width(self.proposal_segments)
        segments = initial.expand(batch, -1, -1)  # (B, N, 2) centre, width
        queries = self.proposal_features.expand(batch, -1, -1)  # (B, N, d)
        stage_logits, stage_segments, stage_levels = [], [], []
        for stage in self.stages:
            logits, segments, queries, level = stage(levels, segments, queries, num_snippets)
            stage_logits.append(logits)
            stage_segments.append(_to_start_end(segments, num_snippets))
            stage_levels.append(level)
            # Sparse R-CNN: each stage refines the last one's boxes, not its gradient; MIN_WIDTH keeps a width that
            # exp underflowed readable by the next stage (no gradient crosses here, so the clamp costs none).
            segments = _min_width(segments.detach())
        outputs = {"logits": stage_logits[-1], "segments": stage_segments[-1],
                   "stage_logits": torch.stack(stage_logits), "stage_segments": torch.stack(stage_segments),
                   "initial_segments": _to_start_end(initial.detach(), num_snippets).expand(batch, -1, -1),
                   "levels": torch.stack(stage_levels), "num_snippets": num_snippets}
        if self.action_classifier is not None:
            outputs["video_logits"] = self.action_classifier(video_features(backbone))
            outputs["video_scores"] = outputs["video_logits"].sigmoid()
        return outputs

    def oracle_outputs(self, outputs: dict, batch: dict) -> dict:
        """``outputs`` with ``video_scores`` (B, K) replaced by the ground truth's classes of each video (1 for a
        class with an instance in the video, else 0): an oracle action head. Pass the result to :meth:`detect`;
        detections of classes absent from a video then score 0 and are dropped. Works with or without the head.
        Returns a new dict; ``outputs`` is not changed."""
        labels = batch["labels"].to(outputs["logits"].device)
        present = F.one_hot(labels.clamp_min(0), self.num_classes) * (labels >= 0)[..., None]  # (B, M, K)
        return {**outputs, "video_scores": present.amax(dim=1).to(outputs["logits"].dtype)}

    # ------------------------------------------------------------------ loss
    def assign(self, logits: torch.Tensor, segments: torch.Tensor, batch: dict) -> torch.Tensor:
        """Which instance each prediction learns: the row of ``batch["segments"]``, -1 for "no action".

        logits (B, N, K) and segments (B, N, 2) snippet units (one stage's output) -> (B, N) int64; with a leading
        stage dim, (S, B, N, K) and (S, B, N, 2) -> (S, B, N), every stage matched on its own.
        ``"one_to_one"``: the Hungarian assignment minimising lambda_cls focal cost + lambda_L1 L1 - lambda_giou
        GIoU on normalised segments (:func:`tadlab.labels.matching_cost`, :func:`~tadlab.labels.hungarian_match`).
        ``"one_to_many"``: that, plus every other prediction whose tIoU with an instance exceeds ``positive_iou``
        (:func:`tadlab.labels.tiou_assign`, its best instance), so every instance keeps at least one positive.
        """
        from tadlab.labels import hungarian_match, matching_cost, tiou_assign

        c, num_snippets = self.config, int(batch["features"].shape[-1])
        single = logits.dim() == 3
        logits, segments = (logits[None], segments[None]) if single else (logits, segments)
        logits, segments = logits.detach(), segments.detach()
        num_stages, batch_size, num_proposals = logits.shape[:3]
        gt_segments, gt_labels = batch["segments"], batch["labels"]
        if c.assignment == "one_to_many":
            assigned = tiou_assign(segments.flatten(0, 1), gt_segments.repeat(num_stages, 1, 1),
                                   gt_labels.repeat(num_stages, 1), self.num_classes, c.positive_iou,
                                   num_snippets=num_snippets)["gt_index"].view(num_stages, batch_size, -1)
        else:
            assigned = torch.full(segments.shape[:3], -1, dtype=torch.int64, device=segments.device)
        for b in range(batch_size):
            real = (gt_labels[b] >= 0).nonzero()[:, 0]  # the cost's columns are the non-padding rows
            if len(real) == 0:
                continue
            # One cost for all stages of a video (S N rows): the checks run once, the rows stay independent.
            cost = matching_cost(logits[:, b].flatten(0, 1), segments[:, b].flatten(0, 1), gt_segments[b],
                                 gt_labels[b], num_snippets, cost_class=c.class_weight, cost_l1=c.l1_weight,
                                 cost_giou=c.giou_weight, alpha=c.focal_alpha, gamma=c.focal_gamma)
            for s, stage_cost in enumerate(cost.split(num_proposals)):
                rows, cols = hungarian_match(stage_cost)
                assigned[s, b, rows] = real[cols]
        return assigned[0] if single else assigned

    def set_loss(self, logits: torch.Tensor, segments: torch.Tensor, assigned: torch.Tensor, batch: dict) -> dict:
        """Eq. 2-3 for one stage: ``focal`` (all N predictions, K sigmoid outputs each), ``l1`` and ``giou``
        (1 - GIoU) on positives, segments normalised by T, each summed and divided by N_pos (at least 1); and
        ``total`` = lambda_cls focal + lambda_L1 l1 + lambda_giou giou. assigned (B, N) as :meth:`assign` gives."""
        from tadlab.losses import sigmoid_focal_loss
        from tadlab.segments import segment_giou

        c, num_snippets = self.config, batch["features"].shape[-1]
        positive = assigned >= 0
        num_positive = positive.sum().clamp_min(1).to(logits.dtype)
        index = assigned.clamp_min(0)
        classes = batch["labels"].gather(1, index)
        targets = F.one_hot(classes.clamp_min(0), self.num_classes).to(logits.dtype) * positive[..., None]
        focal = sigmoid_focal_loss(logits, targets, c.focal_alpha, c.focal_gamma, reduction="sum") / num_positive
        predicted = segments[positive] / num_snippets  # (P, 2) normalised
        target = batch["segments"].gather(1, index[..., None].expand(-1, -1, 2))[positive].to(logits.dtype)
        target = target / num_snippets
        l1 = (predicted - target).abs().sum() / num_positive
        giou = (1 - segment_giou(predicted, target, aligned=True)).sum() / num_positive
        total = c.class_weight * focal + c.l1_weight * l1 + c.giou_weight * giou
        return {"total": total, "focal": focal, "l1": l1, "giou": giou, "positives": positive.sum()}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """The set loss of every stage (auxiliary losses, Sec. 3.1.3) plus lambda_act times the action loss.

        Returns ``total``; ``focal``, ``l1``, ``giou`` (the last stage's, unweighted); ``stage_1`` .. ``stage_S``
        (each stage's weighted set loss); ``positives_per_instance`` (last stage: 1 under one-to-one matching when
        N >= instances); ``action`` (binary cross-entropy of the video-level head, with the head).
        """
        logits = outputs["stage_logits"]
        batch = {k: v.to(logits.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        if batch["labels"].shape[1] == 0:  # no instance in any video: one padding row keeps the gathers defined
            batch["labels"] = batch["labels"].new_full((logits.shape[1], 1), -1)
            batch["segments"] = batch["segments"].new_zeros(logits.shape[1], 1, 2)
        assigned = self.assign(logits, outputs["stage_segments"], batch)  # (S, B, N)
        terms, total = {}, logits.new_zeros(())
        for s, (stage_logits, stage_segments) in enumerate(zip(logits, outputs["stage_segments"]), start=1):
            stage = self.set_loss(stage_logits, stage_segments, assigned[s - 1], batch)
            terms[f"stage_{s}"] = stage["total"]
            total = total + stage["total"]
        terms.update(focal=stage["focal"], l1=stage["l1"], giou=stage["giou"])
        instances = (batch["labels"] >= 0).sum().clamp_min(1)
        terms["positives_per_instance"] = stage["positives"].to(logits.dtype) / instances
        if "video_logits" in outputs:
            present = F.one_hot(batch["labels"].clamp_min(0), self.num_classes) * (batch["labels"] >= 0)[..., None]
            target = present.amax(dim=1).to(logits.dtype)  # (B, K): the classes present in each video
            terms["action"] = F.binary_cross_entropy_with_logits(outputs["video_logits"], target)
            total = total + self.config.action_weight * terms["action"]
        return {"total": total, **terms}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, outputs: dict, *, top_k: int = 100, score_threshold: float = 0.0,
               classes_per_proposal: int | None = None, nms: dict | None = None, action_scores: bool = True):
        """The last stage's N predictions as detections, one dict per video: ``segments`` (M, 2) snippet units
        clamped to [0, T], ``scores`` (M,), ``labels`` (M,) int64, best first (Sec. 3.2.2).

        Scores are the sigmoid class probabilities, times ``outputs["video_scores"]`` (B, K) when present and
        ``action_scores`` (Sec. 3.2.2: the action head's scores; :meth:`oracle_outputs` puts the ground truth's
        classes there). ``action_scores=False`` measures the detections without any video-level scores. A proposal
        gives one detection per class, or only its
        ``classes_per_proposal`` best classes. The ``top_k`` best (proposal, class) pairs above ``score_threshold``
        are kept; segments empty after clamping are dropped. No NMS by default (one-to-one matching already
        penalises duplicates); ``nms`` = a dict of :func:`tadlab.segments.batched_soft_nms` keyword arguments
        (``{}`` for its Gaussian default) runs class-aware Soft-NMS on them.
        """
        from tadlab.segments import batched_soft_nms

        for name, value in (("top_k", top_k), ("classes_per_proposal", classes_per_proposal)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int{' or None' if name != 'top_k' else ''}, "
                                 f"got {value!r}")
        if nms is not None and not isinstance(nms, dict):
            raise TypeError(f"nms must be None (no NMS) or a dict of batched_soft_nms arguments, got {nms!r}")
        scores = outputs["logits"].sigmoid()  # (B, N, K)
        if action_scores and "video_scores" in outputs:  # the head's scores, or the oracle's (oracle_outputs)
            scores = scores * outputs["video_scores"][:, None, :]
        if classes_per_proposal is not None and classes_per_proposal < scores.shape[-1]:
            kth = scores.topk(classes_per_proposal, dim=-1).values[..., -1:]
            scores = torch.where(scores >= kth, scores, torch.zeros_like(scores))
        num_classes, num_snippets = scores.shape[-1], outputs["num_snippets"]
        best, flat = scores.flatten(1).topk(min(top_k, scores[0].numel()), dim=1)  # (B, M)
        proposal, labels = flat // num_classes, flat % num_classes
        segments = outputs["segments"].gather(1, proposal[..., None].expand(-1, -1, 2)).clamp(0, num_snippets)
        detections = []
        for seg, score, label in zip(segments, best, labels):
            keep = (score > score_threshold) & (seg[:, 1] > seg[:, 0])
            seg, score, label = seg[keep], score[keep], label[keep]
            if nms is not None:
                seg, score, label, _ = batched_soft_nms(seg, score, label, **nms)
            detections.append({"segments": seg, "scores": score, "labels": label.to(torch.int64)})
        return detections

    # ------------------------------------------------------------------ cost
    def cost(self, num_snippets: int = 128, batch_size: int = 1) -> dict:
        """Parameter count and forward FLOPs (``torch.utils.flop_counter``, one multiply-add = 2 FLOPs) for
        ``batch_size`` videos of ``num_snippets`` snippets. Returns ``{"params": int, "flops": int}``."""
        return forward_cost(self, num_snippets, batch_size, grad=True)  # grad on: attention's fast path


def _min_width(segments: torch.Tensor) -> torch.Tensor:
    """(..., 2) (centre, width) with the width at least MIN_WIDTH (the input of a stage)."""
    return torch.stack([segments[..., 0], segments[..., 1].clamp_min(MIN_WIDTH)], dim=-1)


def _to_start_end(segments: torch.Tensor, num_snippets: int) -> torch.Tensor:
    """(..., 2) (centre, width) as fractions of T -> (..., 2) [start, end) in snippet units."""
    centre, width = segments.unbind(-1)
    return torch.stack([centre - width / 2, centre + width / 2], dim=-1) * num_snippets


def thumos_size_cost(**overrides) -> dict:
    """Cost of one SP-TAD at a THUMOS-like size: a 256-snippet window (the paper's 256-frame clips; its pyramid
    then has 128, 64, 32, 16 cells as ours), 2048-d two-stream I3D features, K = 20, N = 50, S = 4, d = 256 (the
    paper's), d_h = 64 (Sparse R-CNN's) and T' = 16 (tadlab's; the paper gives neither).

    The paper reports speed (Table 3) but neither parameters nor FLOPs, and its cost includes the I3D backbone
    that tadlab replaces by pre-extracted features. Returns ``params_M`` and ``flops_G`` (one window).
    """
    options = dict(hidden=256, num_proposals=50, num_stages=4, dynamic_dim=64, soi_points=16)
    options.update(overrides)
    cost = SPTAD(2048, 20, **options).cost(num_snippets=256)
    return {**options, "params_M": cost["params"] / 1e6, "flops_G": cost["flops"] / 1e9}
