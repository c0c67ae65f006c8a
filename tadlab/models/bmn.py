"""BMN: the Boundary-Matching Network (Lin et al., ICCV 2019), the grid proposal generator RCL's RRM refines.

Every proposal is a pair (start, duration) on a D x T grid; BMN scores all of them at once as a "boundary-matching
confidence map" and, beside it, the probability that each snippet starts or ends an action:

    features (B, C, T)
      -> base module: two 1D convs (k=3, groups 4)                              base (B, H1, T)
      -> temporal evaluation module (TEM): 1D conv (k=3), 1x1 conv -> 2          start, end logits (B, T)
      -> proposal evaluation module (PEM):
           1D conv (k=3)                                                        (B, Hbm, T)
           boundary-matching layer: one matmul with a precomputed sampling tensor,
             N points per proposal, for the P proposals that end inside the video  (B, Hbm, N, P)
           "3D conv" with kernel (N, 1, 1) = one linear map of the N samples      (B, H3, P) -> grid (B, H3, D, T)
           2D convs 1x1, 3x3, 3x3                                               proposal features (B, H2, D, T)
           1x1 conv -> 2                                                        map logits (B, 2, D, T)
      -> optional refinement (``refine=RRM(...)``, :mod:`tadlab.models.rrm`): residual updates of the map logits

The map's channel 0 regresses the proposal's tIoU with the ground truth ("regression", p_cr), channel 1 classifies
it ("classification", p_cc); cell (d, t) is the proposal [t, t + d + 1) in snippet units, as
:func:`tadlab.labels.boundary_matching_map` builds its target.

**The sampling tensor.** Proposal [t, t + d + 1) of length L = d + 1 is extended by ``boundary_ratio`` * L = L/2 on
both sides (BMN's context), and N bins are sampled over the extended region by linear interpolation of the
snippet features (snippet t sits at its centre t + 0.5; outside the video the features are zero, as in BMN). All
of it is one tensor W with ``Y = X @ W``, built once and kept as a non-persistent buffer (it follows the model's
device and dtype and is rebuilt from the config, never saved). Only the P = sum_d (T - d) cells whose proposal ends
inside the video are sampled (BMN samples all D x T cells and masks the rest in the loss); the other cells get zero
proposal features. Memory of W at T = 100, D = 100 (P = 5,050), N = 32, ``samples_per_bin`` = 3 (float32):
dense (T, N P) = 100 x 161,600: 64.6 MB (BMN's dense (T, N, D, T) tensor over all cells is 128 MB);
sparse COO (``sampling="sparse"``): 478,336 non-zeros, 9.6 MB (two int64 indices and a float32 each).
On a CPU the dense matmul is the faster of the two at these sizes (it is BLAS); the sparse one is there to show
the memory saving and for large T.

**Losses** (BMN Sec. 3.5): L = L_TEM + lambda * L_reg + L_cls with lambda = 10, where L_TEM is BMN's weighted
binary cross-entropy of the start and end probabilities against the widened boundary labels
(:func:`tadlab.labels.boundary_labels` with ``width=3`` snippets, positives > 0.5), L_reg the squared error of the
regression channel on a balanced sample of cells (all cells with tIoU > 0.7; cells in (0.3, 0.7] and in [0, 0.3]
each kept with probability n_high / n_group, so that each group is about as large as the high one) and L_cls the
balanced binary cross-entropy of the classification channel (positives tIoU > 0.9). Weight decay is the
optimiser's (``fit(weight_decay=...)``). The low group's bounds differ between BMN's public implementations: the
authors' PaddlePaddle code (``pem_reg_loss_func`` in PaddlePaddle/models and PaddleVideo's ``BMNLoss``) takes
[0, 0.3], so the many cells that overlap no instance (tIoU 0) are sampled too; the PyTorch port (JJBOY's
``pem_reg_loss_func``) and MMAction2 take (0, 0.3], so those cells never enter L_reg.
``sample_zero_iou=True`` (default) is the authors', ``False`` the port's.

**Inference** (BMN Sec. 3.6): start candidates are the snippets whose start probability is a local peak or above
half the video's maximum (end candidates likewise; the first snippet is always a start candidate and the last
always an end candidate, as in BSN); every valid cell joining a start candidate and an end candidate is a
proposal, scored p_s * p_e * p_cc * p_cr (``fusion="product"``, as BMN's public code and RCL score it; the BMN
paper prints p_s * p_e * sqrt(p_cc * p_cr), ``fusion="sqrt"``), then BMN's Soft-NMS keeps the best 100
(``nms="bmn"``, :func:`tadlab.segments.bmn_soft_nms`, as BMN's public post-processing: a Gaussian decay, sigma 0.4,
only of the proposals whose tIoU with the selected one exceeds t1 + (t2 - t1) * (its width / T), with (t1, t2) =
``nms_thresholds`` = (0.5, 0.9) as in the PyTorch port (JJBOY) and MMAction2; the authors' PaddleVideo code has
(0.55, 0.9)). ``nms="gaussian"`` decays every overlap (:func:`tadlab.segments.soft_nms`, sigma 0.4); it was
tadlab's only decoding before, and notebook 06's hand-made rows of the earlier worlds (``results/06_candidates.json``)
were measured with it; the results workflow's rows (``tadlab.studies.rrm``) use BMN's.
The boundary candidates are the paper's, the authors' PaddlePaddle code's and those of the 2019 revision of the
PyTorch port; its 2020 revision takes every valid cell (``candidates="all"``). Which recalls more is an empirical
question: on the synthetic anet world at T = D = 50 (notebook 06, ``results/06_candidates.json``: 3 seeds,
testing, Gaussian Soft-NMS) every cell a candidate reached AR@100 0.800 ± 0.033 against 0.746 ± 0.057 with the
candidates (mean ± std over the seeds), higher on each seed.
BMN is class-agnostic: ``detect`` returns proposals with label 0, or, given video-level class scores, proposals x
the top video classes as detections (:func:`tadlab.models.video_classifier.combine_proposals_with_classes`).

Deviations and choices, stated:
- Boundaries: the start probability of proposal [t, t + d + 1) is read at its first snippet t and the end
  probability at its last snippet t + d (the boundary labels are symmetric around a boundary, so both snippets that
  touch it are positives). Sampling positions are in the same snippet units (features at snippet centres); BMN's
  code measures from the snippet index and extends by (L + 1) / 2, a half-snippet quirk not kept here.
- Only valid cells are sampled (above); the TEM is one shared head with two outputs as in the paper's Table 1 (the
  public code has two); the binary cross-entropies use log-sigmoid of logits instead of log(p + 1e-6).
- ``center_features=True`` (off by default; not in BMN) subtracts each video's per-channel mean over time first, as
  GSMT's option does: the synthetic world adds a per-video offset that BMN's unnormalised convolutions otherwise see.
- The default widths are BMN's (256, 128, 512, 128, N = 32, 3 samples per bin, :data:`PAPER_CONFIG`); on a CPU use
  much smaller ones (:data:`CPU_CONFIG`: 32, 16, 32, 16, N = 8, 1 sample per bin).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.labels import boundary_labels, boundary_matching_map
from tadlab.models.blocks import forward_cost
from tadlab.models.rrm import RRM, sequence_weights
from tadlab.models.video_classifier import combine_proposals_with_classes
from tadlab.segments import bmn_soft_nms, soft_nms
from tadlab.utils import check_choice

PAPER_CONFIG = dict(hidden_1d=256, hidden_bm=128, hidden_3d=512, hidden_2d=128, num_samples=32, samples_per_bin=3)
CPU_CONFIG = dict(hidden_1d=32, hidden_bm=16, hidden_3d=32, hidden_2d=16, num_samples=8, samples_per_bin=1)
REGRESSION_WEIGHT = 10.0  # lambda of BMN's L = L_TEM + lambda * L_reg + L_cls
BMN_NMS_THRESHOLDS = (0.5, 0.9)  # (t1, t2) of BMN's Soft-NMS: the PyTorch port and MMAction2 (PaddleVideo: 0.55, 0.9)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _number(name: str, value, low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (low < value if low_open else low <= value) or not value <= high or not math.isfinite(value):
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------ boundary-matching layer
def proposal_cells(num_snippets: int, max_duration: int, device=None) -> torch.Tensor:
    """The P valid cells of the D x T map, (P, 2) int64 rows (d, t): proposal [t, t + d + 1) ends inside the video.

    Ordered by d, then t (row-major over the map), P = sum over d < D of (T - d).
    """
    _positive_int("num_snippets", num_snippets)
    _positive_int("max_duration", max_duration)
    d = torch.arange(max_duration, device=device)[:, None]
    t = torch.arange(num_snippets, device=device)
    return torch.stack((t + d + 1 <= num_snippets).nonzero(as_tuple=True), dim=1)


def sample_positions(cells: torch.Tensor, num_samples: int, samples_per_bin: int = 1,
                     boundary_ratio: float = 0.5) -> torch.Tensor:
    """Where the BM layer samples: cells (P, 2) rows (d, t) -> positions (P, N, S) in snippet units (float64).

    Proposal [t, t + d + 1), length L = d + 1, is extended to [t - r L, t + d + 1 + r L] (r = ``boundary_ratio``);
    N * S points are spread evenly over it, ends included, and bin n holds points n S .. n S + S - 1.
    """
    d, t = cells[:, 0].double(), cells[:, 1].double()
    length = d + 1
    low, high = t - boundary_ratio * length, t + length + boundary_ratio * length
    count = num_samples * samples_per_bin
    steps = torch.arange(count, dtype=torch.float64, device=cells.device) / max(count - 1, 1)
    positions = low[:, None] + (high - low)[:, None] * steps
    return positions.reshape(-1, num_samples, samples_per_bin)


def boundary_matching_weights(num_snippets: int, max_duration: int, num_samples: int = 32, samples_per_bin: int = 3,
                              boundary_ratio: float = 0.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """BMN's sampling tensor, as a sparse COO (T, N * P) matrix W with ``Y = X @ W``.

    W[k, n * P + p] is the weight of snippet k in bin n of valid cell p (:func:`proposal_cells` order): the mean over
    the bin's S points of the linear-interpolation weight, features at snippet centres k + 0.5, zero outside the
    video. X (rows, T) @ W -> (rows, N * P), i.e. (rows, N, P).
    """
    cells = proposal_cells(num_snippets, max_duration, device)
    positions = sample_positions(cells, num_samples, samples_per_bin, boundary_ratio)  # (P, N, S)
    num_cells = cells.shape[0]
    index = positions - 0.5  # continuous snippet index: snippet k's feature sits at position k + 0.5
    below = torch.floor(index)
    fraction = index - below
    rows = torch.stack([below, below + 1], dim=-1).long()  # (P, N, S, 2) the two neighbours
    weights = torch.stack([1 - fraction, fraction], dim=-1) / samples_per_bin
    bins = torch.arange(num_samples, device=cells.device)[None, :, None, None]
    columns = (bins * num_cells + torch.arange(num_cells, device=cells.device)[:, None, None, None]).expand_as(rows)
    keep = (rows >= 0) & (rows < num_snippets) & (weights > 0)  # outside the video: zero padding
    weights = torch.sparse_coo_tensor(torch.stack([rows[keep], columns[keep]]), weights[keep],
                                      (num_snippets, num_samples * num_cells), check_invariants=True)
    return weights.coalesce().to(dtype)


class BoundaryMatchingLayer(nn.Module):
    """features (B, C, T) -> proposal features (B, C, N, P): N bins sampled over each of the P valid proposals.

    One precomputed tensor and one matmul, no loop over proposals. ``sampling="dense"`` keeps W as a dense
    (T, N * P) buffer, ``"sparse"`` as a sparse COO (N * P, T) buffer (see the module docstring for their memory).
    Args as in :func:`boundary_matching_weights`.
    """

    def __init__(self, num_snippets: int, max_duration: int, num_samples: int = 32, samples_per_bin: int = 3,
                 boundary_ratio: float = 0.5, sampling: str = "dense"):
        super().__init__()
        check_choice("sampling", sampling, {"dense", "sparse"})
        _positive_int("num_samples", num_samples)
        _positive_int("samples_per_bin", samples_per_bin)
        _number("boundary_ratio", boundary_ratio, 0.0)
        self.num_snippets, self.max_duration, self.num_samples = num_snippets, max_duration, num_samples
        self.sampling = sampling
        weights = boundary_matching_weights(num_snippets, max_duration, num_samples, samples_per_bin, boundary_ratio)
        cells = proposal_cells(num_snippets, max_duration)
        self.num_cells = cells.shape[0]
        # Derived from the config, so not saved in checkpoints (persistent=False); .to() moves and casts them.
        self.register_buffer("weights", weights.to_dense() if sampling == "dense" else weights.t().coalesce(),
                             persistent=False)
        self.register_buffer("cell_index", cells[:, 0] * num_snippets + cells[:, 1], persistent=False)  # (P,) in D*T

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, length = features.shape
        if length != self.num_snippets:
            raise ValueError(f"features must have T = num_snippets = {self.num_snippets} snippets, got {length}")
        rows = features.reshape(batch * channels, length)  # (B*C, T)
        weights = self.weights if self.weights.dtype == rows.dtype else self.weights.to(rows.dtype)
        if self.sampling == "dense":
            sampled = rows @ weights  # (B*C, N*P)
        else:
            sampled = torch.sparse.mm(weights, rows.t()).t()  # (N*P, T) @ (T, B*C), transposed back
        return sampled.reshape(batch, channels, self.num_samples, self.num_cells)

    def memory_bytes(self) -> int:
        """Bytes the sampling tensor takes (values and, when sparse, its int64 indices)."""
        w = self.weights
        if w.is_sparse:
            return w._nnz() * (w.element_size() + 2 * 8)
        return w.numel() * w.element_size()


# ------------------------------------------------------------------------------------------ losses
def balanced_bce(logits: torch.Tensor, positive: torch.Tensor, considered: torch.Tensor | None = None) -> torch.Tensor:
    """BMN's weighted binary cross-entropy: positives and negatives weigh half each, whatever their counts.

    BMN weights positives by 0.5 n / n_pos and negatives by 0.5 n / n_neg over the n considered entries, i.e.
    loss = 0.5 * mean over positives of -log p + 0.5 * mean over negatives of -log(1 - p). ``logits``, ``positive``
    (bool) and ``considered`` (bool, default all) share a shape; a side with no entry contributes 0.
    """
    considered = torch.ones_like(positive) if considered is None else considered
    pos, neg = (positive & considered).to(logits.dtype), (~positive & considered).to(logits.dtype)
    pos_loss = -(F.logsigmoid(logits) * pos).sum() / pos.sum().clamp_min(1)
    neg_loss = -(F.logsigmoid(-logits) * neg).sum() / neg.sum().clamp_min(1)
    return 0.5 * pos_loss + 0.5 * neg_loss


def regression_sample(iou: torch.Tensor, valid: torch.Tensor, high: float = 0.7, low: float = 0.3,
                      sample_zero_iou: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """BMN's cells for the tIoU regression loss: bool mask, ``iou``'s shape, ``valid`` broadcasting to it.

    Every valid cell with tIoU > ``high``; those in (low, high] and those in [0, low] each kept at random with
    probability n_high / n_group (so each group contributes about n_high cells; all of a group when it is smaller).
    ``sample_zero_iou=False`` makes the low group (0, low]: cells with tIoU 0 (overlapping no instance) are then
    never sampled (BMN's PyTorch port and MMAction2; the authors' PaddlePaddle code samples them, the default).
    """
    valid = valid.expand_as(iou)
    top = (iou > high) & valid
    middle = (iou > low) & (iou <= high) & valid
    bottom = (iou <= low) & valid
    if not sample_zero_iou:
        bottom = bottom & (iou > 0)
    count = top.sum().to(iou.dtype)
    draw = torch.rand(iou.shape, generator=generator, device=iou.device, dtype=iou.dtype)
    keep_middle = middle & (draw < count / middle.sum().clamp_min(1))
    keep_bottom = bottom & (draw < count / bottom.sum().clamp_min(1))
    return top | keep_middle | keep_bottom


def map_losses(map_logits: torch.Tensor, iou: torch.Tensor, valid: torch.Tensor, sample: torch.Tensor,
               positive_iou: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The two PEM losses of one map: (regression, classification).

    map_logits (B, 2, D, T), iou target (B, D, T), valid (D, T) bool, sample (B, D, T) bool from
    :func:`regression_sample`. Regression: 0.5 * mean squared error of sigmoid(channel 0) over the sampled cells;
    classification: :func:`balanced_bce` of channel 1 with positives tIoU > ``positive_iou`` over the valid cells.
    """
    regression = torch.sigmoid(map_logits[:, 0])
    weights = sample.to(regression.dtype)
    mse = 0.5 * (weights * (regression - iou) ** 2).sum() / weights.sum().clamp_min(1)
    classification = balanced_bce(map_logits[:, 1], iou > positive_iou, valid.expand_as(iou))
    return mse, classification


# ------------------------------------------------------------------------------------------ the network
class BMN(nn.Module):
    """Boundary-Matching Network on pre-extracted features, optionally refined (``refine=RRM(...)``).

    Args:
        feature_dim: C, input feature width (400 for ActivityNet's two-stream features).
        num_snippets: T, the snippets per video (a model serves one T: the sampling tensor depends on it).
        max_duration: D, the longest proposal in snippets (default T).
        hidden_1d: H1, base module and TEM width (256). hidden_bm: Hbm, channels sampled by the BM layer (128).
        hidden_3d: H3, output of the "3D conv" over the N samples (512). hidden_2d: H2, the 2D convs' width (128).
        num_samples: N bins per proposal (32). samples_per_bin: points averaged per bin (3 in BMN's code; 1 gives
            the paper's plain N points). boundary_ratio: extension on each side, a fraction of the length (0.5).
        groups: groups of the base module's and TEM's 1D convs (4, BMN's code); must divide C and H1.
        sampling: ``"dense"`` or ``"sparse"`` sampling tensor (same numbers).
        boundary_width: width in snippets of the boundary regions of the start/end labels (3).
        regression_weight: lambda of L_reg (10).
        sample_zero_iou: whether cells with tIoU 0 can enter L_reg's low group (True: [0, 0.3], the authors'
            PaddlePaddle code; False: (0, 0.3], BMN's PyTorch port and MMAction2; see the module docstring).
        center_features: subtract each video's per-channel mean over time first (not in BMN; as GSMT's option).
        refine: None (plain BMN) or an :class:`~tadlab.models.rrm.RRM` whose ``feature_dim`` equals ``hidden_2d``.

    ``forward(features (B, C, T), iterations=None)`` returns a dict:
        ``start_logits``, ``end_logits``, ``start``, ``end`` (B, T); ``initial_map_logits`` (B, 2, D, T) the PEM's
        map; ``map_logits`` (B, 2, D, T) the final map (the last refinement, or the PEM's) and ``confidence`` its
        sigmoid: channel 0 regression (tIoU), channel 1 classification; with ``refine``: ``refined_map_logits``, a
        list with the map after every iteration (``iterations`` overrides the RRM's count for this call).
    """

    def __init__(self, feature_dim: int, num_snippets: int, max_duration: int | None = None, *,
                 hidden_1d: int = 256, hidden_bm: int = 128, hidden_3d: int = 512, hidden_2d: int = 128,
                 num_samples: int = 32, samples_per_bin: int = 3, boundary_ratio: float = 0.5, groups: int = 4,
                 sampling: str = "dense", boundary_width: float = 3.0, regression_weight: float = REGRESSION_WEIGHT,
                 sample_zero_iou: bool = True, center_features: bool = False, refine: nn.Module | None = None):
        super().__init__()
        max_duration = num_snippets if max_duration is None else max_duration
        for name, value in [("feature_dim", feature_dim), ("num_snippets", num_snippets),
                            ("max_duration", max_duration), ("hidden_1d", hidden_1d), ("hidden_bm", hidden_bm),
                            ("hidden_3d", hidden_3d), ("hidden_2d", hidden_2d), ("groups", groups)]:
            _positive_int(name, value)
        if max_duration > num_snippets:
            raise ValueError(f"max_duration must be <= num_snippets = {num_snippets}, got {max_duration}")
        if feature_dim % groups or hidden_1d % groups:
            raise ValueError(f"groups must divide feature_dim and hidden_1d, got groups={groups}, "
                             f"feature_dim={feature_dim}, hidden_1d={hidden_1d}")
        self.boundary_width = _number("boundary_width", boundary_width, 0.0, low_open=True)
        self.regression_weight = _number("regression_weight", regression_weight, 0.0)
        if refine is not None:
            if not isinstance(refine, RRM):
                raise TypeError(f"refine must be None or an RRM, got {type(refine).__name__}")
            if refine.feature_dim != hidden_2d:
                raise ValueError(f"refine.feature_dim must equal hidden_2d = {hidden_2d} (the RRM reads BMN's "
                                 f"proposal features), got {refine.feature_dim}")
        self.feature_dim, self.num_snippets, self.max_duration = feature_dim, num_snippets, max_duration
        self.center_features = bool(center_features)
        if not isinstance(sample_zero_iou, bool):
            raise TypeError(f"sample_zero_iou must be a bool, got {type(sample_zero_iou).__name__} {sample_zero_iou!r}")
        self.sample_zero_iou = sample_zero_iou

        self.base = nn.Sequential(  # base module
            nn.Conv1d(feature_dim, hidden_1d, 3, padding=1, groups=groups), nn.ReLU(),
            nn.Conv1d(hidden_1d, hidden_1d, 3, padding=1, groups=groups), nn.ReLU())
        self.tem = nn.Sequential(  # temporal evaluation module: start and end logits
            nn.Conv1d(hidden_1d, hidden_1d, 3, padding=1, groups=groups), nn.ReLU(),
            nn.Conv1d(hidden_1d, 2, 1))
        self.pem_1d = nn.Sequential(nn.Conv1d(hidden_1d, hidden_bm, 3, padding=1), nn.ReLU())
        self.bm_layer = BoundaryMatchingLayer(num_snippets, max_duration, num_samples, samples_per_bin,
                                              boundary_ratio, sampling)
        # BMN's Conv3d(Hbm, H3, kernel (N, 1, 1), stride (N, 1, 1)) is one linear map of each cell's (Hbm, N) samples.
        self.pem_samples = nn.Sequential(nn.Conv1d(hidden_bm * num_samples, hidden_3d, 1), nn.ReLU())
        self.pem_2d = nn.Sequential(
            nn.Conv2d(hidden_3d, hidden_2d, 1), nn.ReLU(),
            nn.Conv2d(hidden_2d, hidden_2d, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden_2d, hidden_2d, 3, padding=1), nn.ReLU())
        self.pem_head = nn.Conv2d(hidden_2d, 2, 1)
        self.refine = refine
        valid = torch.zeros(max_duration * num_snippets, dtype=torch.bool)
        valid[self.bm_layer.cell_index] = True
        self.register_buffer("valid", valid.reshape(max_duration, num_snippets), persistent=False)  # (D, T)

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor, iterations: int | None = None) -> dict:
        """``features (B, C, T)`` -> dict (see the class docstring)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.feature_dim or features.shape[2] != self.num_snippets:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, {self.num_snippets}) "
                             f"(B, feature_dim, num_snippets), got {tuple(features.shape)}")
        if iterations is not None and self.refine is None:
            raise ValueError(f"iterations={iterations!r} needs a refine module; this BMN has refine=None")
        batch = features.shape[0]
        if self.center_features:
            features = features - features.mean(dim=2, keepdim=True)
        base = self.base(features)  # (B, H1, T)
        start_logits, end_logits = self.tem(base).unbind(1)  # (B, T) each

        sampled = self.bm_layer(self.pem_1d(base))  # (B, Hbm, N, P)
        cells = self.pem_samples(sampled.flatten(1, 2))  # (B, H3, P)
        grid = cells.new_zeros(batch, cells.shape[1], self.max_duration * self.num_snippets)
        grid = grid.index_copy(2, self.bm_layer.cell_index, cells)  # invalid cells keep zero features
        proposal_features = self.pem_2d(grid.reshape(batch, -1, self.max_duration, self.num_snippets))  # (B,H2,D,T)
        map_logits = self.pem_head(proposal_features)  # (B, 2, D, T)

        outputs = {"start_logits": start_logits, "end_logits": end_logits, "start": torch.sigmoid(start_logits),
                   "end": torch.sigmoid(end_logits), "initial_map_logits": map_logits}
        if self.refine is not None:
            refined = self.refine(proposal_features, map_logits, iterations=iterations)
            outputs["refined_map_logits"] = refined
            map_logits = refined[-1] if refined else map_logits
        outputs["map_logits"], outputs["confidence"] = map_logits, torch.sigmoid(map_logits)
        return outputs

    # ------------------------------------------------------------------ cost
    def cost(self, iterations: int | None = None, batch_size: int = 1) -> dict:
        """Parameters and forward FLOPs (``torch.utils.flop_counter``; a multiply-add is 2 FLOPs) of ``batch_size``
        videos, with ``iterations`` RRM steps (default: the RRM's test-time count; ignored without ``refine``).

        The sparse sampling matmul is not in the counter's table; it is counted here as 2 x non-zeros x columns.
        Returns ``{"params", "flops", "iterations"}``.
        """
        def sparse_addmm_flops(bias, sparse, dense, *args, out_val=None, **kwargs):
            return 2 * sparse._nnz() * dense.shape[1]

        sparse_addmm_flops._get_raw = True  # the counter passes the tensors themselves, not their shapes
        steps = None
        if self.refine is not None:
            steps = self.refine.test_iterations if iterations is None else iterations
        cost = forward_cost(self, self.num_snippets, batch_size, iterations=steps,
                            custom_mapping={torch.ops.aten._sparse_addmm: sparse_addmm_flops})
        return {**cost, "iterations": steps or 0}

    # ------------------------------------------------------------------ loss
    def targets(self, batch: dict) -> dict:
        """From a collated batch: ``start``, ``end`` (B, T) soft boundary labels and ``iou`` (B, D, T) the BM map."""
        segments, labels = batch["segments"], batch["labels"]
        start, end = boundary_labels(segments, self.num_snippets, width=self.boundary_width, labels=labels)
        iou = boundary_matching_map(segments, self.num_snippets, self.max_duration, labels=labels)
        return {"start": start, "end": end, "iou": iou}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """BMN's loss, plus RAFT's sequence loss over the refined maps when there are any.

        total = L_TEM + lambda L_reg + L_cls (the PEM's map) + sum_i gamma^(n-i-1) (lambda L_reg,i + L_cls,i) over the
        n refined maps (weights :func:`tadlab.models.rrm.sequence_weights`; the last map weighs 1). The regression
        cells are sampled once per batch and shared by every map. Returns ``total``, ``tem``, ``regression``,
        ``classification`` (of the PEM's map), ``refinement`` (the weighted sum, 0 without refinement) and
        ``final_regression``, ``final_classification`` (of the map ``detect`` reads).
        """
        logits = outputs["initial_map_logits"]
        batch = {k: v.to(logits.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        targets = self.targets(batch)
        iou = targets["iou"].to(logits.dtype)
        tem = (balanced_bce(outputs["start_logits"], targets["start"] > 0.5)
               + balanced_bce(outputs["end_logits"], targets["end"] > 0.5))
        sample = regression_sample(iou, self.valid, sample_zero_iou=self.sample_zero_iou)
        regression, classification = map_losses(logits, iou, self.valid, sample)
        total = tem + self.regression_weight * regression + classification
        refinement = logits.new_zeros(())
        final_regression, final_classification = regression, classification
        refined = outputs.get("refined_map_logits") or []
        if refined:
            weights = sequence_weights(len(refined), self.refine.gamma)
            for weight, step_logits in zip(weights, refined):
                final_regression, final_classification = map_losses(step_logits, iou, self.valid, sample)
                refinement = refinement + weight * (self.regression_weight * final_regression + final_classification)
        return {"total": total + refinement, "tem": tem, "regression": regression, "classification": classification,
                "refinement": refinement, "final_regression": final_regression,
                "final_classification": final_classification}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, outputs: dict, *, top_k: int = 100, candidates: str = "peaks", fusion: str = "product",
               nms: str = "bmn", sigma: float = 0.4, nms_thresholds: tuple = BMN_NMS_THRESHOLDS,
               class_scores: torch.Tensor | None = None, top_classes: int = 1) -> list[dict]:
        """Proposals (or detections) per video; see :func:`decode_boundary_matching`."""
        return decode_boundary_matching(outputs["start"], outputs["end"], outputs["confidence"], self.valid,
                                        top_k=top_k, candidates=candidates, fusion=fusion, nms=nms, sigma=sigma,
                                        nms_thresholds=nms_thresholds, class_scores=class_scores,
                                        top_classes=top_classes)


def boundary_candidates(probs: torch.Tensor, first: bool) -> torch.Tensor:
    """BSN/BMN boundary candidates: probs (B, T) -> bool (B, T), True where the probability is a local peak or above
    half the video's maximum; the first (``first=True``, starts) or last snippet (ends) always is one."""
    left = F.pad(probs, (1, 0), value=-math.inf)[:, :-1]
    right = F.pad(probs, (0, 1), value=-math.inf)[:, 1:]
    peak = (probs > left) & (probs > right)
    chosen = peak | (probs > 0.5 * probs.amax(dim=1, keepdim=True))
    chosen[:, 0 if first else -1] = True
    return chosen


def decode_boundary_matching(start: torch.Tensor, end: torch.Tensor, confidence: torch.Tensor, valid: torch.Tensor,
                             *, top_k: int = 100, candidates: str = "peaks", fusion: str = "product",
                             nms: str = "bmn", sigma: float = 0.4, nms_thresholds: tuple = BMN_NMS_THRESHOLDS,
                             class_scores: torch.Tensor | None = None, top_classes: int = 1) -> list[dict]:
    """BMN inference: start, end (B, T) probabilities, confidence (B, 2, D, T) [regression, classification], valid
    (D, T) -> one dict per video of ``segments`` (M, 2) snippet units, ``scores`` (M,), ``labels`` (M,) int64.

    1. Candidate cells: valid, starting at a start candidate and ending at an end candidate
       (:func:`boundary_candidates`; ``candidates="all"`` takes every valid cell).
    2. Score: ``fusion="product"`` p_s p_e p_cc p_cr (BMN's code, RCL) or ``"sqrt"`` p_s p_e sqrt(p_cc p_cr) (the BMN
       paper, Sec. 3.6).
    3. Soft-NMS, best ``top_k``: ``nms="bmn"`` BMN's (:func:`tadlab.segments.bmn_soft_nms`: Gaussian decay by
       exp(-tIoU² / ``sigma``) only where tIoU > low + (high - low) * width / T, ``nms_thresholds`` = (low, high) =
       (0.5, 0.9), the width that of the selected proposal, T the video's snippets); ``nms="gaussian"`` decays every
       overlap (:func:`tadlab.segments.soft_nms`). ``sigma`` = 0.4 as BMN on ActivityNet, for both.
    4. Without ``class_scores``: proposals, label 0. With ``class_scores`` (B, K) video-level probabilities: every
       proposal x each of the ``top_classes`` best classes, score multiplied
       (:func:`tadlab.models.video_classifier.combine_proposals_with_classes`).
    """
    check_choice("candidates", candidates, {"peaks", "all"})
    check_choice("fusion", fusion, {"sqrt", "product"})
    check_choice("nms", nms, {"bmn", "gaussian"})
    _positive_int("top_k", top_k)
    _number("sigma", sigma, 0.0, low_open=True)
    if not isinstance(nms_thresholds, (tuple, list)) or len(nms_thresholds) != 2:
        raise ValueError(f"nms_thresholds must be a pair (low, high) of tIoUs, got {nms_thresholds!r}")
    low, high = (_number(f"nms_thresholds[{i}]", v, 0.0, 1.0) for i, v in enumerate(nms_thresholds))
    if start.dim() != 2 or end.shape != start.shape:
        raise ValueError(f"start and end must have the same shape (B, T), got {tuple(start.shape)} and "
                         f"{tuple(end.shape)}")
    batch, length = start.shape
    if confidence.dim() != 4 or confidence.shape[:2] != (batch, 2) or confidence.shape[3] != length:
        raise ValueError(f"confidence must have shape (B, 2, D, T) = ({batch}, 2, D, {length}), got "
                         f"{tuple(confidence.shape)}")
    max_duration = confidence.shape[2]
    if tuple(valid.shape) != (max_duration, length):
        raise ValueError(f"valid must have shape (D, T) = {(max_duration, length)}, got {tuple(valid.shape)}")
    d = torch.arange(max_duration, device=start.device)[:, None]
    t = torch.arange(length, device=start.device)
    last = (t + d).clamp(max=length - 1)  # (D, T) the proposal's last snippet
    p_start = start[:, None, :].expand(-1, max_duration, -1)  # (B, D, T)
    p_end = end[:, last]  # (B, D, T)
    keep = valid[None].expand(batch, -1, -1)
    if candidates == "peaks":
        keep = keep & boundary_candidates(start, first=True)[:, None, :]
        keep = keep & boundary_candidates(end, first=False)[:, last]
    regression, classification = confidence[:, 0], confidence[:, 1]
    confident = (regression * classification).sqrt() if fusion == "sqrt" else regression * classification
    scores = p_start * p_end * confident
    segments = torch.stack([t.expand(max_duration, -1), t + d + 1], dim=-1).to(start.dtype)  # (D, T, 2)

    proposals = []
    for b in range(batch):
        if nms == "bmn":
            seg, score, _ = bmn_soft_nms(segments[keep[b]], scores[b][keep[b]], length, sigma=sigma,
                                         low_threshold=low, high_threshold=high, top_k=top_k)
        else:
            seg, score, _ = soft_nms(segments[keep[b]], scores[b][keep[b]], method="gaussian", sigma=sigma,
                                     min_score=0.0, top_k=top_k)
        proposals.append({"segments": seg, "scores": score,
                          "labels": torch.zeros(score.shape[0], dtype=torch.int64, device=score.device)})
    if class_scores is None:
        return proposals
    return combine_proposals_with_classes(proposals, class_scores, top_classes=top_classes)
