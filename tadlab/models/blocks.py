"""Building blocks the detectors share: snippet embeddings over a ``(B, C, T)`` feature sequence.

Every embedding here maps ``(B, C, T) -> (B, C, T)`` (channels-first, the width C unchanged), so a
detector can swap one for another (GSMT Table 4: Transformer vs 1D CNN vs MS-TCN):

- :class:`TransformerEncoderLayer` / :class:`TransformerEmbedding`: pre-LayerNorm multi-head self-attention and a
  residual MLP (GSMT Eq. 1-2).
- :class:`DilatedCNNEmbedding`: the "1D CNN" of GSMT Sec. 4.2, dilation rates (1, 3, 5), two layers each.
- :class:`MSTCNEmbedding`: MS-TCN-style stages of dilated residual layers (Farha & Gall, 2019).

Each takes the same optional :class:`PositionalEncoding` (``positional=None``, ``"learned"`` or ``"fixed"``, GSMT
Table 13), added to its input before anything else, so that a comparison of embeddings can keep the encoding
fixed. Self-attention without one is permutation-equivariant: it cannot tell snippets apart by place at all.
Convolutions know *relative* position (they are translation-equivariant, up to the zero padding at the borders) but
not *absolute* position; a head that outputs one channel per absolute position (GSMT's mask head: channel k of
column t is the mask at snippet k) needs the absolute position from somewhere, and away from the borders a CNN
without an encoding has none.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from tadlab.utils import check_choice


def _check_features(features: torch.Tensor, channels: int) -> None:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
    if features.dim() != 3 or features.shape[1] != channels:
        raise ValueError(f"features must have shape (B, {channels}, T), got {tuple(features.shape)}")


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed encoding of Vaswani et al. (2017): ``(num_positions, dim)``, sin on even and cos on odd channels."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class PositionalEncoding(nn.Module):
    """Add a position table to channels-first features: ``(B, C, T) -> (B, C, T)``.

    ``kind``: ``None`` (the identity: no encoding), ``"learned"`` (a trained ``(T, C)`` table, initialised
    N(0, 0.02^2)) or ``"fixed"`` (:func:`sinusoidal_positions`). An encoding needs ``num_snippets`` and then
    accepts only that T.
    """

    def __init__(self, kind: str | None, dim: int, num_snippets: int | None = None):
        super().__init__()
        if kind not in (None, "learned", "fixed"):
            raise ValueError(f"positional must be None, 'learned' or 'fixed', got {kind!r}")
        if kind is not None and (isinstance(num_snippets, bool) or not isinstance(num_snippets, int)
                                 or num_snippets <= 0):
            raise ValueError(f"positional={kind!r} needs num_snippets (a positive int), got {num_snippets!r}")
        self.kind, self.dim, self.num_snippets = kind, dim, num_snippets
        if kind == "learned":
            self.positions = nn.Parameter(torch.randn(num_snippets, dim) * 0.02)
        elif kind == "fixed":
            self.register_buffer("positions", sinusoidal_positions(num_snippets, dim), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind is None:
            return features
        if features.shape[-1] != self.num_snippets:
            raise ValueError(f"features have T={features.shape[-1]} snippets, but the {self.kind} positional "
                             f"encoding was built for num_snippets={self.num_snippets}")
        return features + self.positions.t().to(features.dtype)  # (C, T) broadcast over the batch

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}, num_snippets={self.num_snippets}"


class TransformerEncoderLayer(nn.Module):
    """One pre-LayerNorm encoder layer on ``(B, T, C)`` tokens (GSMT Eq. 1-2).

    ``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``. GSMT's MLP is "one fully-connected layer with residual skip
    connection" (Sec. 3.1), so ``mlp_ratio=None`` (default) gives exactly that: Linear(C, C) + GELU. A number gives
    the usual two-layer MLP with a hidden width ``mlp_ratio * C`` instead.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1, mlp_ratio: float | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden width must be divisible by heads, got hidden={dim}, heads={heads}")
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim)
        if mlp_ratio is None:
            self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        else:
            width = int(mlp_ratio * dim)
            self.mlp = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, dim),
                                     nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, T, C) -> (B, T, C)``."""
        normed = self.attention_norm(tokens)
        attended, _ = self.attention(normed, normed, normed, need_weights=False)
        tokens = tokens + self.dropout(attended)
        return tokens + self.mlp(self.mlp_norm(tokens))


class TransformerEmbedding(nn.Module):
    """A stack of :class:`TransformerEncoderLayer` on channels-first features: ``(B, C, T) -> (B, C, T)``.

    ``positional``: ``None`` (GSMT's default: no encoding, Table 13), ``"learned"`` or ``"fixed"``
    (:class:`PositionalEncoding`, added to the input). Without one the embedding is permutation-equivariant.
    """

    def __init__(self, dim: int, heads: int = 4, layers: int = 1, dropout: float = 0.1,
                 positional: str | None = None, num_snippets: int | None = None, mlp_ratio: float | None = None):
        super().__init__()
        self.dim = dim
        self.positional = PositionalEncoding(positional, dim, num_snippets)  # first: a learned table's init
        self.layers = nn.ModuleList(TransformerEncoderLayer(dim, heads, dropout, mlp_ratio) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)  # pre-LN stacks end with a norm, else the residual stream is unscaled

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.dim)
        tokens = self.positional(features).transpose(1, 2)  # (B, T, C): attention mixes along T
        for layer in self.layers:
            tokens = layer(tokens)
        return self.final_norm(tokens).transpose(1, 2)


class DilatedResidualLayer(nn.Module):
    """``x + Dropout(Conv1x1(ReLU(DilatedConv3(x))))`` on ``(B, C, T)``: the MS-TCN layer, also used by the 1D CNN."""

    def __init__(self, dim: int, dilation: int, dropout: float = 0.1):
        super().__init__()
        self.dilated = nn.Conv1d(dim, dim, kernel_size=3, padding=dilation, dilation=dilation)
        self.pointwise = nn.Conv1d(dim, dim, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.dropout(self.pointwise(torch.relu(self.dilated(features))))


class DilatedCNNEmbedding(nn.Module):
    """GSMT's 1D-CNN alternative (Sec. 4.2): dilation rates ``(1, 3, 5)``, two layers each; ``(B, C, T) -> (B, C, T)``.

    Each layer is a residual dilated convolution (kernel 3); the receptive field is 1 + 2 * 2 * (1 + 3 + 5) = 37
    snippets, local compared with self-attention's whole video, which is the point of the ablation.
    ``positional``: an optional :class:`PositionalEncoding` added to the input (None by default).
    """

    def __init__(self, dim: int, dilations=(1, 3, 5), layers_per_dilation: int = 2, dropout: float = 0.1,
                 positional: str | None = None, num_snippets: int | None = None):
        super().__init__()
        self.dim = dim
        self.positional = PositionalEncoding(positional, dim, num_snippets)
        self.layers = nn.Sequential(*(DilatedResidualLayer(dim, d, dropout)
                                      for d in dilations for _ in range(layers_per_dilation)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.dim)
        return self.layers(self.positional(features))


class MSTCNEmbedding(nn.Module):
    """MS-TCN-style embedding (Farha & Gall, 2019): ``stages`` single-stage TCNs in a row; ``(B, C, T) -> (B, C, T)``.

    A stage is a 1x1 conv, ``layers_per_stage`` dilated residual layers with dilation 1, 2, 4, ... (receptive field
    2^(L+1) - 1 snippets, 255 for L = 7, so the whole video at T = 100) and a 1x1 conv. Deviation: MS-TCN's stages
    output class scores and the next stage reads their softmax; as an embedding each stage here passes on C-wide
    features instead (the detector's heads do the classifying). ``positional``: an optional
    :class:`PositionalEncoding` added to the input (None by default).
    """

    def __init__(self, dim: int, stages: int = 2, layers_per_stage: int = 7, dropout: float = 0.1,
                 positional: str | None = None, num_snippets: int | None = None):
        super().__init__()
        self.dim = dim
        self.positional = PositionalEncoding(positional, dim, num_snippets)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, 1),
                          *(DilatedResidualLayer(dim, 2 ** i, dropout) for i in range(layers_per_stage)),
                          nn.Conv1d(dim, dim, 1))
            for _ in range(stages))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.dim)
        features = self.positional(features)
        for stage in self.stages:
            features = stage(features)
        return features


def make_embedding(kind: str, dim: int, *, heads: int = 4, layers: int = 1, dropout: float = 0.1,
                   positional: str | None = None, num_snippets: int | None = None) -> nn.Module:
    """The snippet embedding called ``kind`` (``"transformer"``, ``"cnn"`` or ``"mstcn"``), width ``dim``.

    ``heads`` and ``layers`` apply to the Transformer only. ``positional`` (``None``, ``"learned"`` or ``"fixed"``,
    with ``num_snippets``) applies to every kind, added to the input: a CNN knows relative position only (see the
    module docstring), so comparing embeddings means giving them the same encoding.
    """
    check_choice("embedding", kind, {"transformer", "cnn", "mstcn"})
    if kind == "transformer":
        return TransformerEmbedding(dim, heads, layers, dropout, positional, num_snippets)
    if kind == "cnn":
        return DilatedCNNEmbedding(dim, dropout=dropout, positional=positional, num_snippets=num_snippets)
    return MSTCNEmbedding(dim, dropout=dropout, positional=positional, num_snippets=num_snippets)


def forward_cost(model: nn.Module, num_snippets: int, batch_size: int = 1, grad: bool = False,
                 custom_mapping: dict | None = None, **forward_kwargs) -> dict:
    """Parameter count and forward FLOPs of ``model`` in eval mode (``torch.utils.flop_counter``, a multiply-add is
    2 FLOPs) on zero features ``(batch_size, model.feature_dim, num_snippets)``: ``{"params": int, "flops": int}``.

    ``grad=True`` leaves autograd as the caller has it (on, normally): in no-grad eval, ``nn.MultiheadAttention`` takes a fused fast path the counter
    does not see. ``custom_mapping`` adds FLOP formulas for operators the counter's table lacks. The model's
    training mode is restored afterwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    dummy = torch.zeros(batch_size, model.feature_dim, num_snippets, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()
    try:
        with contextlib.nullcontext() if grad else torch.no_grad(), \
                FlopCounterMode(display=False, custom_mapping=custom_mapping) as counter:
            model(dummy, **forward_kwargs)
    finally:
        model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters()), "flops": counter.get_total_flops()}
