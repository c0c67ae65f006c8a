"""RRM: the recurrent refinement module of RCL (Wang et al., RCL supplementary Sec. 1.1, Eq. 1, Fig. 4).

BMN scores every (duration, start) proposal in one shot. RRM instead *refines* that confidence map over a few
iterations, as RAFT refines optical flow: a convolutional GRU keeps a hidden state over the D x T map and, at
every iteration, reads the current map and the proposal features and predicts a residual on the map's logits.

    proposal features F (B, Cf, D, T)  (BMN's PEM features, :class:`tadlab.models.bmn.BMN`)
      -> context network: one 3x3 conv -> split -> hidden h_0 = tanh(64 channels), context c = ReLU(32 channels)
    map logits G_0 (B, 2, D, T)  (BMN's map: channel 0 tIoU regression, channel 1 classification)
    for i in 1..n:
        G = G_{i-1}.detach()                                   (no gradient through the map between iterations)
        x_i = [encode(G, F), c]                                (RAFT's SmallMotionEncoder analogue + context)
        h_i = ConvGRU(h_{i-1}, x_i)                            (Eq. 1: gates z, r and candidate h~, 3x3 convs)
        G_i = G + head(h_i)                                    (residual on the logits; sigmoid gives the map)

The encoder of x: the map through a 7x7 and a 3x3 conv, the features through a 1x1 conv, both fused by a 3x3 conv,
and the map itself appended (the layout of RAFT's small motion encoder, with the map in the place of the flow and
the proposal features in the place of the correlation features).

**What each iteration reads, and what it does not.** Iteration i reads four things: the hidden state h_{i-1}, the
context c (computed once from F before the loop), the proposal features F (the same tensor at every iteration,
through the same 1x1 conv, so the same encoded features every time) and the current map G_{i-1}. Only h and G
change from one iteration to the next, and both are the RRM's own outputs: no iteration sees anything about the
video that the first did not. RAFT's iterations differ exactly there: before each update RAFT indexes its
all-pairs correlation volume *at the current estimate* (``corr_fn(coords1)``: for every pixel a (2r + 1)² window,
r = 3 in RAFT-small, around where the current flow sends it, at 4 pyramid levels), so as the estimate moves the
update block sees correlations it has not seen before, and a wrong estimate can be corrected by new evidence. The
RRM has no such lookup (a cell of the map is a fixed proposal [t, t + d + 1), there is no coordinate that moves):
it is a recurrent refinement of the map conditioned on fixed features, closer to an unrolled denoiser of G than
to RAFT's search. This is what RCL describes (supplementary Eq. 1: x_t is the concatenation of the confidence
scores G_t, temporal features and context features; Fig. 4 passes the same ``base_feat`` to ``update_block`` at
every iteration), so it is faithful to RCL, not a simplification made here.

**Training supervises every iteration** with RAFT's sequence loss: map i (of n) weighs gamma^(n - i) (i = 1..n,
gamma = 0.8, :func:`sequence_weights`), so the last map weighs 1. RCL's code figure (Fig. 4) returns only the last
map; RAFT, whose update block RRM takes, supervises all of them, and so does tadlab.

Choices the paper leaves open, stated:
- the "base features" of Fig. 4 are BMN's 2D proposal features (the PEM's last hidden map before its 1x1 output
  conv), since the GRU runs on the D x T map; they also form the "temporal features" part of x;
- the context network is one 3x3 conv (RAFT's is a full CNN encoder); the encoder and head widths are RAFT-small-like
  defaults (``encoder_dim`` 32, ``motion_dim`` 64, ``head_dim`` 64), the hidden and context widths the 64 and 32 of
  Fig. 4;
- the head's last conv starts at zero, so an untrained RRM leaves BMN's map unchanged and refinement starts from
  plain BMN (RAFT initialises it randomly);
- iterations at training and at test time are separate (``iterations``, ``test_iterations``, or per call).
"""
from __future__ import annotations

import torch
from torch import nn

CPU_CONFIG = dict(hidden_dim=8, context_dim=8, encoder_dim=8, motion_dim=8, head_dim=8)
GAMMA = 0.8  # RAFT's sequence-loss decay


def _count(name: str, value, allow_zero: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value}")
    return value


def sequence_weights(iterations: int, gamma: float = GAMMA) -> list[float]:
    """RAFT's sequence-loss weights of ``iterations`` predictions: [gamma^(n-1), ..., gamma, 1] (the last weighs 1)."""
    _count("iterations", iterations)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise ValueError(f"gamma must be a number in (0, 1], got {gamma!r}")
    return [float(gamma) ** (iterations - i - 1) for i in range(iterations)]


class ConvGRU(nn.Module):
    """The convolutional GRU cell of RCL Eq. 1 (RAFT's ConvGRU): hidden h (B, Ch, D, T), input x (B, Cx, D, T).

        z = sigmoid(conv_z([h, x])),  r = sigmoid(conv_r([h, x])),  h~ = tanh(conv_h([r * h, x])),
        h' = (1 - z) * h + z * h~            (every conv 3x3, Ch + Cx -> Ch channels)
    """

    def __init__(self, hidden_dim: int, input_dim: int, kernel_size: int = 3):
        super().__init__()
        _count("hidden_dim", hidden_dim, allow_zero=False)
        _count("input_dim", input_dim, allow_zero=False)
        padding = kernel_size // 2
        self.hidden_dim, self.input_dim = hidden_dim, input_dim
        self.conv_update = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=padding)
        self.conv_reset = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=padding)
        self.conv_candidate = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=padding)

    def gates(self, hidden: torch.Tensor, inputs: torch.Tensor) -> dict:
        """Every quantity of Eq. 1: ``update`` z, ``reset`` r (in (0, 1)), ``candidate`` h~ (in (-1, 1)) and the new
        ``hidden`` h', all (B, Ch, D, T)."""
        if hidden.shape[1] != self.hidden_dim or inputs.shape[1] != self.input_dim:
            raise ValueError(f"ConvGRU expects hidden (B, {self.hidden_dim}, D, T) and input (B, {self.input_dim}, "
                             f"D, T), got {tuple(hidden.shape)} and {tuple(inputs.shape)}")
        both = torch.cat([hidden, inputs], dim=1)
        update = torch.sigmoid(self.conv_update(both))
        reset = torch.sigmoid(self.conv_reset(both))
        candidate = torch.tanh(self.conv_candidate(torch.cat([reset * hidden, inputs], dim=1)))
        new_hidden = (1 - update) * hidden + update * candidate
        return {"update": update, "reset": reset, "candidate": candidate, "hidden": new_hidden}

    def forward(self, hidden: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.gates(hidden, inputs)["hidden"]


class MapEncoder(nn.Module):
    """The map-and-features part of x: map logits (B, 2, D, T), features (B, Cf, D, T) -> (B, motion_dim, D, T).

    map -> 7x7, 3x3 convs; features -> 1x1 conv; both concatenated -> 3x3 conv (motion_dim - 2 channels), and the
    two map channels appended.
    """

    def __init__(self, feature_dim: int, encoder_dim: int = 32, motion_dim: int = 64):
        super().__init__()
        if motion_dim <= 2:
            raise ValueError(f"motion_dim must exceed 2 (the map's own channels are appended), got {motion_dim}")
        self.features = nn.Sequential(nn.Conv2d(feature_dim, encoder_dim, 1), nn.ReLU())
        self.map = nn.Sequential(nn.Conv2d(2, encoder_dim, 7, padding=3), nn.ReLU(),
                                 nn.Conv2d(encoder_dim, encoder_dim, 3, padding=1), nn.ReLU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * encoder_dim, motion_dim - 2, 3, padding=1), nn.ReLU())

    def forward(self, map_logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([self.map(map_logits), self.features(features)], dim=1))
        return torch.cat([fused, map_logits], dim=1)


class UpdateBlock(nn.Module):
    """RAFT's SmallUpdateBlock for a confidence map: (h, context, features, map logits) -> (h', residual (B, 2, D, T)).

    x = [context, MapEncoder(map, features)]; h' = ConvGRU(h, x); residual = head(h') (3x3 conv, ReLU, 3x3 conv).
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 64, context_dim: int = 32, encoder_dim: int = 32,
                 motion_dim: int = 64, head_dim: int = 64):
        super().__init__()
        self.encoder = MapEncoder(feature_dim, encoder_dim, motion_dim)
        self.gru = ConvGRU(hidden_dim, context_dim + motion_dim)
        self.head = nn.Sequential(nn.Conv2d(hidden_dim, head_dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(head_dim, 2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # an untrained block leaves the map unchanged (see the module docstring)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, hidden, context, features, map_logits):
        inputs = torch.cat([context, self.encoder(map_logits, features)], dim=1)
        hidden = self.gru(hidden, inputs)
        return hidden, self.head(hidden)


class RRM(nn.Module):
    """Recurrent refinement of a (B, 2, D, T) confidence map's logits from (B, feature_dim, D, T) proposal features.

    Args:
        feature_dim: Cf, channels of the proposal features (BMN's ``hidden_2d``).
        iterations: updates while training (10, RCL Table 1's best).
        test_iterations: updates in eval mode (default ``iterations``); ``forward(..., iterations=k)`` overrides both.
        hidden_dim, context_dim: the GRU's hidden state (64, tanh) and the context input (32, ReLU) of Fig. 4.
        encoder_dim, motion_dim, head_dim: widths of the map encoder and the residual head.
        gamma: the sequence-loss decay (0.8), read by :meth:`tadlab.models.bmn.BMN.loss`.

    ``forward(features, map_logits, iterations=None)`` returns the list of the n refined maps' logits (empty for 0).
    """

    def __init__(self, feature_dim: int, iterations: int = 10, test_iterations: int | None = None, *,
                 hidden_dim: int = 64, context_dim: int = 32, encoder_dim: int = 32, motion_dim: int = 64,
                 head_dim: int = 64, gamma: float = GAMMA):
        super().__init__()
        for name, value in [("feature_dim", feature_dim), ("hidden_dim", hidden_dim), ("context_dim", context_dim),
                            ("encoder_dim", encoder_dim), ("motion_dim", motion_dim), ("head_dim", head_dim)]:
            _count(name, value, allow_zero=False)
        self.train_iterations = _count("iterations", iterations)
        self.test_iterations = iterations if test_iterations is None else _count("test_iterations", test_iterations)
        sequence_weights(1, gamma)  # validates gamma
        self.feature_dim, self.hidden_dim, self.context_dim, self.gamma = feature_dim, hidden_dim, context_dim, gamma
        self.context = nn.Conv2d(feature_dim, hidden_dim + context_dim, 3, padding=1)
        self.update = UpdateBlock(feature_dim, hidden_dim, context_dim, encoder_dim, motion_dim, head_dim)

    def forward(self, features: torch.Tensor, map_logits: torch.Tensor, iterations: int | None = None) -> list:
        if features.dim() != 4 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, D, T), got {tuple(features.shape)}")
        if map_logits.dim() != 4 or map_logits.shape[1] != 2 or map_logits.shape[2:] != features.shape[2:] \
                or map_logits.shape[0] != features.shape[0]:
            raise ValueError(f"map_logits must have shape (B, 2, D, T) = {(features.shape[0], 2, *features.shape[2:])}"
                             f" to match features, got {tuple(map_logits.shape)}")
        if iterations is None:
            iterations = self.train_iterations if self.training else self.test_iterations
        if _count("iterations", iterations) == 0:
            return []  # plain BMN: not even the context network runs
        hidden, context = self.context(features).split([self.hidden_dim, self.context_dim], dim=1)
        hidden, context = torch.tanh(hidden), torch.relu(context)
        refined = []
        for _ in range(iterations):
            map_logits = map_logits.detach()  # RAFT: each update starts from a constant map
            hidden, residual = self.update(hidden, context, features, map_logits)
            map_logits = map_logits + residual
            refined.append(map_logits)
        return refined
