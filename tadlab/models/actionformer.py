"""ActionFormer: one-stage, anchor-free temporal action detection with a local-window Transformer (Zhang, Wu, Li,
"ActionFormer: Localizing Moments of Actions with Transformers", ECCV 2022).

Every moment of a multi-scale feature pyramid classifies itself (K independent sigmoid scores) and, when it is
inside an action, regresses its distances to that action's start and end. One candidate segment per (moment,
class); Soft-NMS removes the duplicates. No proposals, no anchors, no matching.

    features (B, C, T)
      -> projection: two 3-wide convs, each + LayerNorm + ReLU                         (B, d, T)
      -> encoder (Sec. 3): Transformer blocks, pre-LayerNorm, each attending within a local window of w cells:
           stem: ``stem_layers`` blocks at stride 1                                      P_0 (B, d, T)
           then one block per further level, halving the length inside its attention   P_l (B, d, ceil(T / 2^l))
           block: x <- pool(x) + MHA_w(LN(x)) (q, k, v from depthwise convs, strided when the block downsamples)
                  x <- x + MLP(LN(x))                                  a LayerNorm on every pyramid level
      -> decoder, shared by all levels: classification = two (3-wide conv, LN, ReLU) + 3-wide conv -> K logits;
                                        regression = the same -> 2, ReLU(scale_l * .) -> distances in strides
      -> points: cell i of level l (stride s_l = 2^l) sits at (i + 0.5) s_l snippets, the centre of the snippets it
         pools; all levels concatenated give P points, logits (B, P, K), offsets (B, P, 2)
    loss:   centre sampling with per-level regression ranges (:func:`tadlab.labels.centre_sampling_assign`) marks
            the positive points; sigmoid focal loss over every point and class + lambda_reg * the IoU loss of the
            positive points' distances, both divided by the number of positives
    detect: every (point, class) pair above a score threshold, the best few thousand, segments
            [p - d_s s_l, p + d_e s_l], class-aware Soft-NMS, the ``top_k`` best

Where this differs from the paper and its released code (happyharrycn/actionformer_release), and why:
- CPU size: width d = 64 (paper: 512 on THUMOS14, 256 on ActivityNet), 4 heads, the decoder as wide as the
  encoder. The depth is the paper's (two projection convs, two stem blocks, five downsampling blocks: six levels,
  strides 1 to 32, ranges [0, 4], [4, 8], ..., [64, inf) snippets); ``stem_layers`` and ``levels`` change it.
- Points sit at (i + 0.5) s_l, tadlab's convention (see :func:`tadlab.labels.centre_sampling_assign`), not at
  i s_l. So that every cell's features are centred where its point is, a downsampling block pools each pair of
  cells (2i, 2i + 1): the skip path max-pools by 2 (the release: kernel 3, stride 2, centred on cell 2i) and the
  strided depthwise convs of q, k, v are 4 wide with one cell of padding on each side (the release: 3 wide).
  An odd length gets one more cell of zero padding on the right, so level l has ceil(T / 2^l) cells.
- No padding masks: tadlab resamples every video to the same T, so a batch has no padded positions.
- Local attention is computed exactly in chunks of w // 2 cells (each chunk's queries against the keys of the
  chunk and its two neighbours, pairs further apart than w // 2 masked; the release uses Longformer's overlapping
  chunks); ``window=None`` attends to the whole level. The window counts cells of the level (19 in the paper's
  THUMOS14 setting), so it covers 19 s_l snippets at level l.
- Regression loss: ``regression_loss="diou"`` (default) is the paper's Distance-IoU loss. ``"giou"`` is
  1 - GIoU through :func:`tadlab.segments.segment_giou`; for two segments that both contain their point (a
  predicted and a target segment around the same moment) the enclosing segment is their union, so GIoU equals
  IoU here and the ``"giou"`` loss is the plain IoU loss: it has no gradient towards moving a segment's centre.
- The classification target is multi-hot (``centre_sampling_assign(..., multi_label=True)``): instances that tie
  for a point (same length) all give it their class, as the release does for THUMOS14's double annotations.
- Losses are divided by the batch's number of positive points (the paper's T+), not by the release's moving
  average of it; no label smoothing; no score voting of segments after Soft-NMS. Top-scoring candidates are
  chosen over all levels at once (the release: per level).
- The regression output's bias starts at 1 (the release: 0), so every point starts predicting one stride to each
  side. The distances are a ReLU of a weighted sum of LayerNormed, ReLUed features; with zero bias and a narrow
  head a distance can start at 0 for every point, and a ReLU at 0 gets no gradient: at d = 16 (4 seeds, 60 AdamW
  steps at lr 3e-3 on a two-video batch) one seed started with the start distance 0 everywhere and its regression
  loss stayed at 0.61, against 0.015-0.032 for bias 1 (0.03-0.07 for the other three seeds with bias 0).
- ``drop_path`` (0.1, the release) drops a block's residual branch per video; ``layer_scale`` (1e-4, the
  release's per-channel scale of that branch) starts every block near the identity. ``layer_scale=None`` removes
  the scale.
- ``positional=True`` adds the fixed sinusoidal encoding (scaled by 1/sqrt(d)) after the projection, as the
  release does on ActivityNet; off by default (THUMOS14): the depthwise convs already give relative position.
- ``center_features=True`` (off by default; not in the paper, as GSMT's option) subtracts each video's
  per-channel mean over time first; the synthetic world adds a per-video offset.

Measured on ``standard_world(preset, "ci", 0)`` (one seed; ``center_features=True``; ``fit`` with AdamW, weight
decay 0.05, batch 4, gradients clipped at 1, a linear warm-up of min(5, epochs / 5) epochs, then cosine). On the
validation videos, lr 3e-4, 1e-3 and 3e-3 for 30 epochs, 1e-3 for 15 and 3e-3 for 60 chose: thumos lr 3e-3 for
60 epochs, validation average mAP (tIoU 0.3:0.7) 0.29, testing 0.43; anet lr 3e-3 for 30 epochs, validation
(0.5:0.95) 0.25, testing 0.32. The temporal-context baseline scores 0.05 and 0.04 (thumos), 0.00 and 0.02 (anet)
there. Without the layer scale (``layer_scale=None``, lr 3e-3, 30 epochs) validation fell to 0.14 (thumos, from
0.28) and 0.18 (anet, from 0.25); the ``"giou"`` (IoU) loss gave 0.25 against DIoU's 0.27 (thumos, lr 1e-3,
30 epochs). One seed each; the spread over seeds was not measured.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.models.blocks import forward_cost, sinusoidal_positions
from tadlab.utils import check_choice

# Soft-NMS after decoding: the release's THUMOS14 test settings (gaussian, sigma 0.5, scores under 1e-3 dropped).
DEFAULT_NMS = {"method": "gaussian", "sigma": 0.5, "min_score": 1e-3}


def default_ranges(levels: int) -> tuple:
    """The paper's regression ranges for ``levels`` levels of strides 1, 2, 4, ...: [0, 4], [4, 8], [8, 16], ...
    in snippets, the last one open-ended (six levels give :data:`tadlab.labels.ACTIONFORMER_RANGES`)."""
    bounds = [0.0] + [4.0 * 2 ** l for l in range(levels - 1)] + [math.inf]
    return tuple(zip(bounds[:-1], bounds[1:]))


@dataclass(frozen=True)
class ActionFormerConfig:
    """Every knob of :class:`ActionFormer` beyond the data's sizes; ``ActionFormer(C, K, **overrides)`` replaces
    some."""

    hidden: int = 64                  # d: width of every layer (paper: 512 THUMOS14, 256 ActivityNet)
    heads: int = 4                    # attention heads (paper: 4)
    stem_layers: int = 2              # Transformer blocks at stride 1 (paper: 2)
    levels: int = 6                   # pyramid levels; levels - 1 downsampling blocks (paper: 6)
    window: int | None = 19           # local attention window in cells, odd (paper THUMOS14: 19); None = global
    mlp_ratio: float = 4.0            # MLP width / d
    projection_kernel: int = 3        # the two projection convs' width
    head_kernel: int = 3              # the decoder convs' width
    head_layers: int = 3              # decoder convs per head, the output conv included (paper: 3)
    positional: bool = False          # add the fixed sinusoidal encoding after the projection (release: ANet only)
    dropout: float = 0.0              # dropout in attention outputs and MLPs (release: 0)
    drop_path: float = 0.1            # stochastic depth of each residual branch (release: 0.1)
    layer_scale: float | None = 1e-4  # initial per-channel scale of each residual branch (release); None: none
    regression_ranges: tuple | None = None  # per-level (lo, hi) snippets; None = default_ranges(levels)
    radius: float = 1.5               # centre sampling radius, in strides (paper: 1.5)
    multi_label: bool = True          # multi-hot targets for instances that tie (release)
    regression_loss: str = "diou"     # "diou" (paper) or "giou" (= IoU loss here, see the module docstring)
    regression_weight: float = 1.0    # lambda_reg (paper: 1)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    prior_prob: float = 0.01          # initial probability of every class (the classifier's bias)
    center_features: bool = False     # subtract each video's per-channel mean over time first (not in the paper)

    def __post_init__(self):
        for name in ("hidden", "heads", "stem_layers", "levels", "projection_kernel", "head_kernel", "head_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "stem_layers" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'stem_layers' else 'positive'} int, "
                                 f"got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads, got hidden={self.hidden}, heads={self.heads}")
        for name in ("projection_kernel", "head_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd (a centred conv), got {getattr(self, name)}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or self.window < 1 or self.window % 2 == 0):
            raise ValueError(f"window must be None (global attention) or a positive odd int, got {self.window!r}")
        check_choice("regression_loss", self.regression_loss, {"diou", "giou"})
        for name in ("positional", "multi_label", "center_features"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.regression_ranges is not None:
            ranges = self.regression_ranges
            if (not isinstance(ranges, (tuple, list)) or len(ranges) != self.levels
                    or any(len(r) != 2 or not r[0] <= r[1] for r in ranges)):
                raise ValueError(f"regression_ranges must be None or {self.levels} (lo, hi) pairs with lo <= hi "
                                 f"(one per level), got {ranges!r}")
        checks = [("mlp_ratio", self.mlp_ratio > 0, "> 0"), ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                  ("drop_path", 0 <= self.drop_path < 1, "in [0, 1)"), ("radius", self.radius > 0, "> 0"),
                  ("regression_weight", self.regression_weight >= 0, ">= 0"),
                  ("focal_alpha", 0 <= self.focal_alpha <= 1, "in [0, 1]"),
                  ("focal_gamma", self.focal_gamma >= 0, ">= 0"), ("prior_prob", 0 < self.prior_prob < 1, "in (0, 1)"),
                  ("layer_scale", self.layer_scale is None or self.layer_scale > 0, "None or > 0")]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    @property
    def strides(self) -> tuple:
        return tuple(2 ** l for l in range(self.levels))

    @property
    def ranges(self) -> tuple:
        if self.regression_ranges is None:
            return default_ranges(self.levels)
        return tuple(tuple(float(v) for v in r) for r in self.regression_ranges)


# ------------------------------------------------------------------------------------------ local attention
def local_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int,
                    window: int | None) -> torch.Tensor:
    """Multi-head attention where cell t attends only to cells t - w//2 .. t + w//2 (``window`` w, odd) that exist.

    query, key, value (B, d, T) -> (B, d, T), d split into ``heads`` heads of d / heads channels, scaled dot
    products. ``window=None`` (or a window that covers the whole sequence) is ordinary global attention. A local
    window works in chunks of c = w // 2 cells: chunk i's queries score the 3c keys of chunks i - 1, i, i + 1 (one
    batched matrix product), the pairs further apart than w // 2 are masked; O(T w d) work, not O(T^2 d).
    """
    batch, dim, length = query.shape
    head_dim = dim // heads

    def split(x):  # (B, d, T) -> (B, h, T, d / h)
        return x.reshape(batch, heads, head_dim, length).transpose(2, 3)

    q, k, v = split(query) * head_dim ** -0.5, split(key), split(value)
    half = length - 1 if window is None else min(window // 2, length - 1)
    if half == 0:  # a window of one cell: every cell attends to itself alone
        return value
    positions = torch.arange(length, device=query.device)
    if 3 * half >= length:  # three chunks would cover the video: one (T, T) score matrix with a band mask
        scores = q @ k.transpose(-2, -1)  # (B, h, T, T)
        outside = (positions[:, None] - positions[None, :]).abs() > half
        out = scores.masked_fill(outside, float("-inf")).softmax(dim=-1) @ v
        return out.transpose(2, 3).reshape(batch, dim, length)
    chunk = half
    count = math.ceil(length / chunk)
    padded = count * chunk
    q = F.pad(q, (0, 0, 0, padded - length)).reshape(batch, heads, count, chunk, head_dim)
    # Keys and values with one chunk of zeros before and enough after: window i of 3c cells = chunks i - 1 .. i + 1.
    k = F.pad(k, (0, 0, chunk, padded - length + chunk)).unfold(2, 3 * chunk, chunk)  # (B, h, n, d / h, 3c)
    v = F.pad(v, (0, 0, chunk, padded - length + chunk)).unfold(2, 3 * chunk, chunk)
    scores = q @ k  # (B, h, n, c, 3c): query r of chunk i (cell i c + r) against key j (cell i c - c + j)
    first = torch.arange(count, device=query.device)[:, None, None] * chunk  # (n, 1, 1)
    row = torch.arange(chunk, device=query.device)[:, None]  # (c, 1)
    key_cell = first - chunk + torch.arange(3 * chunk, device=query.device)  # (n, 1, 3c)
    outside = ((key_cell - first - row).abs() > half) | (key_cell < 0) | (key_cell >= length)  # (n, c, 3c)
    weights = scores.masked_fill(outside, float("-inf")).softmax(dim=-1)
    out = (weights @ v.transpose(-2, -1)).reshape(batch, heads, padded, head_dim)[:, :, :length]
    return out.transpose(2, 3).reshape(batch, dim, length)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of channels-first features: (B, d, T) -> (B, d, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvAttention(nn.Module):
    """ActionFormer's attention with depthwise convs: (B, d, T) -> (B, d, T) or, with ``downsample``,
    (B, d, ceil(T / 2)).

    q, k, v each come from a depthwise conv (3 wide; 4 wide with stride 2 when downsampling, so output cell i is
    centred on input cells 2i and 2i + 1), a LayerNorm and a 1x1 projection; then :func:`local_attention` and an
    output 1x1 projection. The depthwise convs give the attention relative position.
    """

    def __init__(self, dim: int, heads: int, window: int | None, downsample: bool, dropout: float):
        super().__init__()
        self.heads, self.window, self.downsample = heads, window, downsample
        kernel, stride = (4, 2) if downsample else (3, 1)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, stride, groups=dim, bias=False) for _ in range(3))
        self.norms = nn.ModuleList(ChannelNorm(dim) for _ in range(3))
        self.projections = nn.ModuleList(nn.Conv1d(dim, dim, 1) for _ in range(3))
        self.output = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1 + x.shape[-1] % 2) if self.downsample else (1, 1))  # odd T: one more cell on the right
        q, k, v = (projection(norm(conv(x))) for conv, norm, projection in zip(self.convs, self.norms,
                                                                                self.projections))
        return self.output(local_attention(q, k, v, self.heads, self.window))


class ResidualBranch(nn.Module):
    """A residual branch's output, scaled per channel (``layer_scale``, learnt) and dropped per video with
    probability ``drop_path`` while training (stochastic depth; kept videos are divided by 1 - drop_path)."""

    def __init__(self, dim: int, drop_path: float, layer_scale: float | None):
        super().__init__()
        self.drop_path = drop_path
        self.scale = None if layer_scale is None else nn.Parameter(torch.full((1, dim, 1), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = self.scale * x
        if not self.training or self.drop_path == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device, dtype=x.dtype) >= self.drop_path
        return x * keep / (1 - self.drop_path)


class TransformerBlock(nn.Module):
    """One pre-LayerNorm encoder block: (B, d, T) -> (B, d, T), or (B, d, ceil(T / 2)) with ``downsample``.

    x <- skip(x) + branch(attention(LN(x))), skip = max-pool by 2 when downsampling (cells 2i, 2i + 1) else the
    identity; then x <- x + branch(MLP(LN(x))), a two-layer MLP (1x1 convs, GELU).
    """

    def __init__(self, config: ActionFormerConfig, downsample: bool):
        super().__init__()
        c, d = config, config.hidden
        self.downsample = downsample
        self.attention_norm = ChannelNorm(d)
        self.attention = ConvAttention(d, c.heads, c.window, downsample, c.dropout)
        self.attention_branch = ResidualBranch(d, c.drop_path, c.layer_scale)
        width = max(1, round(c.mlp_ratio * d))
        self.mlp_norm = ChannelNorm(d)
        self.mlp = nn.Sequential(nn.Conv1d(d, width, 1), nn.GELU(), nn.Dropout(c.dropout), nn.Conv1d(width, d, 1),
                                 nn.Dropout(c.dropout))
        self.mlp_branch = ResidualBranch(d, c.drop_path, c.layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.max_pool1d(x, 2, ceil_mode=True) if self.downsample else x
        x = skip + self.attention_branch(self.attention(self.attention_norm(x)))
        return x + self.mlp_branch(self.mlp(self.mlp_norm(x)))


class Head(nn.Module):
    """The decoder shared by every level: (head_layers - 1) x (conv, LayerNorm, ReLU), then a conv to ``outputs``
    channels; (B, d, T_l) -> (B, outputs, T_l)."""

    def __init__(self, config: ActionFormerConfig, outputs: int):
        super().__init__()
        d, kernel = config.hidden, config.head_kernel
        layers = []
        for _ in range(config.head_layers - 1):
            layers += [nn.Conv1d(d, d, kernel, padding=kernel // 2, bias=False), ChannelNorm(d), nn.ReLU()]
        self.layers = nn.Sequential(*layers)
        self.output = nn.Conv1d(d, outputs, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))


# ------------------------------------------------------------------------------------------ the detector
class ActionFormer(nn.Module):
    """ActionFormer-style one-stage, anchor-free detector (see the module docstring).

    Args: ``feature_dim`` C, ``num_classes`` K, a :class:`ActionFormerConfig` and/or keyword overrides of it.
    Any T works (a batch shares one T); level l has ceil(T / 2^l) cells.

    ``forward(features (B, C, T))`` returns a dict: ``logits`` (B, P, K) and ``offsets`` (B, P, 2) >= 0 (distances
    to start and end, in strides) for the P points of all levels (level 0 first); ``points`` (P,) snippet units,
    ``strides`` (P,), ``levels`` (P,) int64; ``num_snippets`` T.
    """

    def __init__(self, feature_dim: int, num_classes: int, config: ActionFormerConfig | None = None, **overrides):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if config is not None and not isinstance(config, ActionFormerConfig):
            raise TypeError(f"config must be an ActionFormerConfig or None, got {type(config).__name__}")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ActionFormerConfig)})
        if unknown:
            raise TypeError(f"unknown ActionFormer options {unknown}; see ActionFormerConfig for the fields")
        self.config = c = dataclasses.replace(config or ActionFormerConfig(), **overrides)
        self.feature_dim, self.num_classes = feature_dim, num_classes
        d, kernel = c.hidden, c.projection_kernel

        self.projection = nn.Sequential(
            nn.Conv1d(feature_dim, d, kernel, padding=kernel // 2, bias=False), ChannelNorm(d), nn.ReLU(),
            nn.Conv1d(d, d, kernel, padding=kernel // 2, bias=False), ChannelNorm(d), nn.ReLU())
        self.stem = nn.ModuleList(TransformerBlock(c, downsample=False) for _ in range(c.stem_layers))
        self.branch = nn.ModuleList(TransformerBlock(c, downsample=True) for _ in range(c.levels - 1))
        self.level_norms = nn.ModuleList(ChannelNorm(d) for _ in range(c.levels))
        self.classifier = Head(c, num_classes)
        self.regressor = Head(c, 2)
        self.regression_scales = nn.Parameter(torch.ones(c.levels))  # one learnt scale per level (release: Scale)
        nn.init.constant_(self.classifier.output.bias, -math.log((1 - c.prior_prob) / c.prior_prob))
        nn.init.constant_(self.regressor.output.bias, 1.0)  # every point starts at one stride to each side

    # ------------------------------------------------------------------ forward
    def pyramid(self, features: torch.Tensor) -> list[torch.Tensor]:
        """``features (B, C, T)`` -> the L pyramid levels, level l (B, d, ceil(T / 2^l))."""
        if self.config.center_features:  # removes a per-video constant offset, as GSMT's option does
            features = features - features.mean(dim=2, keepdim=True)
        x = self.projection(features)
        if self.config.positional:
            table = sinusoidal_positions(x.shape[-1], x.shape[1]).to(x.device, x.dtype)  # (T, d)
            x = x + table.t() / math.sqrt(x.shape[1])
        for block in self.stem:
            x = block(x)
        levels = [x]
        for block in self.branch:
            levels.append(block(levels[-1]))
        return [norm(level) for norm, level in zip(self.level_norms, levels)]

    def forward(self, features: torch.Tensor) -> dict:
        """``features (B, C, T)`` -> dict (see the class docstring)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.feature_dim or features.shape[2] < 1:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, T) (B, feature_dim, snippets), "
                             f"got {tuple(features.shape)}")
        logits, offsets = [], []
        for level, x in enumerate(self.pyramid(features)):
            logits.append(self.classifier(x).transpose(1, 2))  # (B, T_l, K)
            offsets.append(F.relu(self.regression_scales[level] * self.regressor(x)).transpose(1, 2))  # (B, T_l, 2)
        points, strides, levels = self.points(features.shape[-1], features.device, features.dtype)
        return {"logits": torch.cat(logits, dim=1), "offsets": torch.cat(offsets, dim=1), "points": points,
                "strides": strides, "levels": levels, "num_snippets": features.shape[-1]}

    def points(self, num_snippets: int, device=None, dtype=torch.float32):
        """Every level's points, level 0 first: ``points`` (P,) at (i + 0.5) s_l snippets for i < ceil(T / s_l),
        ``strides`` (P,) and ``levels`` (P,) int64 (the order of :func:`tadlab.labels.centre_sampling_assign`)."""
        points, strides, levels = [], [], []
        for level, stride in enumerate(self.config.strides):
            count = math.ceil(num_snippets / stride)
            points.append((torch.arange(count, device=device, dtype=dtype) + 0.5) * stride)
            strides.append(torch.full((count,), stride, device=device, dtype=dtype))
            levels.append(torch.full((count,), level, device=device, dtype=torch.int64))
        return torch.cat(points), torch.cat(strides), torch.cat(levels)

    # ------------------------------------------------------------------ loss
    def targets(self, batch: dict, num_snippets: int) -> dict:
        """Centre sampling of ``batch``'s ``segments`` (B, N, 2) and ``labels`` (B, N) on this model's pyramid over
        ``num_snippets`` snippets (:func:`tadlab.labels.centre_sampling_assign`): ``classes``
        (B, P, K) float targets (multi-hot or one-hot, zero rows at negatives), ``gt_index`` (B, P) int64 (-1:
        negative), ``offsets`` (B, P, 2) distances to start and end in strides, and ``points``, ``strides``,
        ``levels`` (P,)."""
        from tadlab.labels import centre_sampling_assign

        c = self.config
        assigned = centre_sampling_assign(batch["segments"], batch["labels"], num_snippets, self.num_classes,
                                          strides=c.strides, regression_ranges=c.ranges, radius=c.radius,
                                          multi_label=c.multi_label)
        if not c.multi_label:
            labels = assigned["labels"]  # background = K gets an all-zero row
            assigned["classes"] = F.one_hot(labels, self.num_classes + 1)[..., :-1].to(assigned["offsets"].dtype)
        return assigned

    def loss(self, outputs: dict, batch: dict) -> dict:
        """L = (sum of sigmoid focal losses over every point and class + lambda_reg * sum of regression losses over
        the positive points) / number of positive points (at least 1).

        Returns ``total``, ``classification`` and ``regression`` (each already divided, regression before
        lambda_reg) and ``positives`` (the positive points per video). The losses are computed in float32.
        """
        from tadlab.losses import sigmoid_focal_loss

        c = self.config
        logits = outputs["logits"].float()
        batch = {k: v.to(logits.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        targets = self.targets({**batch, "segments": batch["segments"].float()}, int(outputs["num_snippets"]))
        positive = targets["gt_index"] >= 0  # (B, P)
        count = positive.sum().clamp_min(1).to(logits.dtype)
        classification = sigmoid_focal_loss(logits, targets["classes"], c.focal_alpha, c.focal_gamma,
                                            reduction="sum") / count
        predicted, target = outputs["offsets"].float()[positive], targets["offsets"][positive]
        regression = offset_iou_loss(predicted, target, c.regression_loss).sum() / count
        return {"total": classification + c.regression_weight * regression, "classification": classification,
                "regression": regression, "positives": positive.sum().to(logits.dtype) / positive.shape[0]}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, outputs: dict, *, top_k: int = 200, candidates: int = 2000, score_threshold: float = 1e-3,
               min_length: float = 0.05, nms: dict | None = DEFAULT_NMS) -> list[dict]:
        """Detections per video: ``segments`` (M, 2) snippet units clipped to [0, T], ``scores`` (M,), ``labels``
        (M,) int64, best first.

        Every (point, class) pair whose sigmoid score exceeds ``score_threshold`` is a candidate (a point may
        propose several classes); the ``candidates`` best are decoded to [p - d_s s, p + d_e s], those shorter than
        ``min_length`` snippets after clipping are dropped, then class-aware Soft-NMS (``nms``: keyword arguments
        of :func:`tadlab.segments.batched_soft_nms`, by default gaussian with sigma 0.5; None: no NMS) and the
        ``top_k`` best are kept.
        """
        from tadlab.segments import batched_soft_nms

        for name, value in (("top_k", top_k), ("candidates", candidates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(min_length, (int, float)) and min_length >= 0):
            raise ValueError(f"min_length must be a number >= 0 (snippets), got {min_length!r}")
        if nms is not None and not isinstance(nms, dict):
            raise TypeError(f"nms must be None (no NMS) or a dict of batched_soft_nms arguments, got {nms!r}")
        scores = outputs["logits"].float().sigmoid()  # (B, P, K)
        num_classes, num_snippets = scores.shape[-1], outputs["num_snippets"]
        best, flat = scores.flatten(1).topk(min(candidates, scores[0].numel()), dim=1)  # (B, M)
        point, labels = flat // num_classes, flat % num_classes
        offsets = outputs["offsets"].float().gather(1, point[..., None].expand(-1, -1, 2))  # (B, M, 2)
        centre, stride = outputs["points"].float()[point], outputs["strides"].float()[point]  # (B, M)
        segments = torch.stack([centre - offsets[..., 0] * stride, centre + offsets[..., 1] * stride], dim=-1)
        segments = segments.clamp(0, num_snippets)
        detections = []
        for seg, score, label in zip(segments, best, labels):
            keep = (score > score_threshold) & (seg[:, 1] - seg[:, 0] > min_length)
            seg, score, label = seg[keep], score[keep], label[keep]
            if nms is not None:
                seg, score, label, _ = batched_soft_nms(seg, score, label, **{"top_k": top_k, **nms})
            detections.append({"segments": seg[:top_k], "scores": score[:top_k], "labels": label[:top_k]})
        return detections

    # ------------------------------------------------------------------ cost
    def cost(self, num_snippets: int = 256, batch_size: int = 1) -> dict:
        """Parameter count and forward FLOPs (``torch.utils.flop_counter``, one multiply-add = 2 FLOPs) for
        ``batch_size`` videos of ``num_snippets`` snippets. Returns ``{"params": int, "flops": int}``."""
        return forward_cost(self, num_snippets, batch_size)


def offset_iou_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str = "diou") -> torch.Tensor:
    """IoU-type loss of segments given as distances from one point: predicted, target (N, 2) = (to start, to end),
    >= 0, in any common unit -> (N,).

    ``"diou"``: 1 - IoU + (distance between the centres / length of the enclosing segment)^2 (Distance-IoU,
    Zheng et al. 2020; ActionFormer's loss). ``"giou"``: 1 - GIoU (:func:`tadlab.segments.segment_giou`); both
    segments contain the point, so the enclosing segment is their union and this equals 1 - IoU.
    """
    from tadlab.segments import segment_giou, segment_iou

    check_choice("kind", kind, {"diou", "giou"})
    pred = torch.stack([-predicted[:, 0], predicted[:, 1]], dim=-1)  # [start, end) around the point at 0
    true = torch.stack([-target[:, 0], target[:, 1]], dim=-1)
    if kind == "giou":
        return 1 - segment_giou(pred, true, aligned=True)
    enclosing = torch.maximum(predicted, target).sum(-1)
    centre_gap = (pred.mean(-1) - true.mean(-1)) / enclosing.clamp_min(torch.finfo(enclosing.dtype).tiny)
    return 1 - segment_iou(pred, true, aligned=True) + centre_gap ** 2


def thumos_size_cost(num_snippets: int = 2304, **overrides) -> dict:
    """Cost of one ActionFormer at the paper's THUMOS14 size: 2048-d two-stream I3D features, K = 20, d = 512,
    4 heads, window 19, six levels, over a ``num_snippets`` window (2304, the release's training length).
    Returns the options with ``params_M`` and ``flops_G`` (one window)."""
    options = dict(hidden=512, heads=4, window=19, levels=6, stem_layers=2)
    options.update(overrides)
    cost = ActionFormer(2048, 20, **options).cost(num_snippets=num_snippets)
    return {**options, "num_snippets": num_snippets, "params_M": cost["params"] / 1e6,
            "flops_G": cost["flops"] / 1e9}
