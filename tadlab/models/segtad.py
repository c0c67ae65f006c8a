"""SegTAD: temporal action detection as 1D semantic segmentation (Zhao et al., SegTAD), read top to bottom.

Every snippet gets a class (K actions + background), learnt from frame labels that the annotations give for free
(Sec. 3.2.3). An hourglass 1D semantic segmentation network (1D-SSN) produces those per-snippet classes and the
features Y; a proposal detection network (PDN, ``segtad_pdn.py``) scores the proposals of a sparse pattern on Y.

    features (B, C, T) -- padded on the right to a multiple of 8 by repeating the last snippet --
        -> encoder: 3 x [Conv1D(k=3, s=2) + ReLU] -> X' (B, C', T/8); the second layer's output (B, C', T/4)
           feeds the highway
        -> PAG (Eq. 2): [GC: edge conv on the kNN graph of X' | AC: 4 atrous convs | GP: global average pool,
           spread back over T/8], concatenated, Conv1D(k=1) + ReLU -> (B, C', T/8)
        -> decoder: linear upsampling to T; highway = Conv1D(k=1) + BatchNorm + ReLU on the second encoder layer,
           upsampled to T; concatenated, Conv1D(k=3) + ReLU -> Y (B, C', T)
        -> segmentation head: Conv1D(k=1) -> logits (B, K+1, T), softmax = p_t (Eq. 3), background at index K
        -> start and end heads (Eq. 6-7): Conv1D(k=3) + ReLU + Conv1D(k=1) + sigmoid -> (B, T) each
           (Y and the heads' outputs are cropped back to the input's T)
        -> PDN on Y -> s1 (tIoU) and s2 (actionness) per proposal (Eq. 9)

Loss (Eq. 11): L = seg_weight L_seg (Eq. 4) + det_weight L_det (Eq. 10) + aux_weight L_aux (Eq. 5), all weights 1
as in the paper. Inference (Sec. 3.4): s1 x s2, Soft-NMS, the top 100; each kept proposal takes the action class
with the highest mean segmentation probability over its snippets, and its score is multiplied by that probability.

Choices the paper leaves open, and deviations (the notebook repeats them):
- Sizes. The paper runs T = 1000 snippets (ActivityNet); our worlds have T = 100 ("anet") and 256 ("thumos"), so
  the encoded length is 13 and 32, not 125. Dilations scale with it: d_b = max(round(d_b^paper T'/125), d_{b-1} +
  1), d^paper = (1, 10, 20, 30), T' = ceil(T/8) (:func:`scaled_dilations`), giving (1, 10, 20, 30) at T' = 125,
  (1, 2, 3, 4) at 13 and (1, 3, 5, 8) at 32.
- T not a multiple of 8: padded on the right by repeating the last snippet (at most 7), and every output cropped
  back to T. The paper's T = 1000 needs no padding.
- ``encoder_strides`` (default the paper's (2, 2, 2)) sets each encoder layer's stride, so that the encoder's
  resolution can be tried against instances far shorter than 8 snippets (the THUMOS-like world's median is about
  3); T' = ceil(T / product), the padding a multiple of the product, the highway always the second layer's output.
- The snippet graph's K (``graph_k`` = 4) is not given for the 1D-SSN; 4 is the PDN's K. The graph and the edge
  convolution follow :mod:`tadlab.models.graph` (a node is not its own neighbour; A's rows divided by K; W is
  2C' x C', the printed C' x C' is a slip).
- Each atrous branch is a Conv1D(k=3, dilation d) + ReLU; the global path is average pooling, spread back over
  T/8 (upsampling a single value is a copy), with no convolution of its own: the fusing 1x1 conv mixes it.
- The decoder upsamples both the PAG output and the highway to T before the 3-wide conv (the paper does not say
  at which resolution they meet); the fusing conv is followed by a ReLU.
- Eq. 5 prints the end term with "=" instead of "+": L_aux is the sum of the start and the end binary
  cross-entropies, each a mean over snippets (labels: the first and the last snippet of each instance).
- L_r (the L2 norm of the weights, lambda_3 = 1) is left to the optimiser's weight decay (``fit(weight_decay=)``).
- The paper multiplies by an external video classifier's top-1 (or top-2) class scores. ``detect(class_scores=)``
  takes such scores (B, K), e.g. from a :class:`~tadlab.models.VideoClassifier` in a
  :class:`~tadlab.models.ProposalDetector`, as BMN's detections take theirs. Without them, by
  default (``classes="proposal"``) the class comes from the segmentation output over the proposal; with
  ``classes="video"`` the 1D-SSN itself stands in for the video classifier: its action probabilities averaged over
  the whole video (renormalised over the K actions) give every proposal of the video the same class scores.
  ``top_classes`` = 2 keeps the two best (the paper's "top-2 cls.").
- ``center_features=True`` (off by default; not in the paper) subtracts each video's per-channel mean over time
  before the encoder, as GSMT and the temporal-context baseline may: the synthetic world gives every video its own
  constant offset per channel, which the strided encoder otherwise has to learn to ignore.
- Training is joint, as in the paper (``stage="joint"``, Sec. 3.4). ``stage="ssn"`` trains the 1D-SSN alone
  (L_seg + L_aux) and ``stage="pdn"`` the PDN alone on a frozen 1D-SSN (L_det only, BatchNorm in eval mode).
- ``detect(decoding="segmentation")`` decodes the segmentation output alone, without the PDN (the ablation "1D-SSN
  alone vs 1D-SSN + PDN"), by class-map grouping (:func:`tadlab.grouping.group_class_map`), the decoder the
  class-map grouping baseline and GSMT's class map use: the same decoder on every class map, so a comparison of
  their rows compares the class maps.
- The PDN returns no boundary refinement (Sec. 3.1 mentions one; Sec. 3.3 defines none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.grouping import DEFAULT_THRESHOLDS, group_class_map
from tadlab.models.blocks import forward_cost
from tadlab.models.graph import EdgeConv, knn_graph
from tadlab.models.segtad_pdn import ProposalDetectionNetwork, deduplicate, sample_neighbourhoods
from tadlab.utils import check_choice

PAPER_DILATIONS = (1, 10, 20, 30)  # Table 6's best, at the encoded length 1000 / 8 = 125
PAPER_ENCODED_LENGTH = 125
PAPER_STRIDES = (2, 2, 2)  # L = 3 stride-2 encoder layers: the encoder divides T by 2^L = 8
STAGES = ("joint", "ssn", "pdn")


@dataclass
class SegTADConfig:
    """Every knob of :class:`SegTAD` (defaults: the paper's where it gives one)."""

    feature_dim: int                    # C, input feature width
    num_classes: int                    # K actions; the segmentation head has K + 1 outputs, background last
    num_snippets: int                   # T; the sparse proposal pattern is built for it
    hidden: int = 256                   # C', the width of every layer (the paper gives none)
    encoder_strides: tuple = PAPER_STRIDES  # each encoder layer's stride (the paper: 2, 2, 2; T' = T / product)
    dilations: tuple | None = None      # atrous dilations; None: scaled_dilations(T')
    atrous: bool = True                 # PAG branches: AC (atrous convolutions) ...
    graph: bool = True                  # ... GC (edge convolution on the dynamic snippet graph) ...
    global_pool: bool = True            # ... GP (global average pooling)
    graph_k: int = 4                    # neighbours per snippet in the dynamic graph (the paper's K, not classes)
    eta: int = 8                        # step of the sparse proposal pattern (Eq. 8)
    max_duration: int | None = None     # longest proposal in snippets (None: T)
    proposal_samples: int = 8           # points sampled along each proposal
    proposal_context: float = 0.25      # fraction of its length sampled beyond each end of a proposal
    pdn_graph: bool = True              # edge convolutions in the PDN (False: per-proposal linear layers, Table 7)
    pdn_k: int = 4                      # K, neighbours per proposal (and per seed in the sampling)
    pdn_layers: int = 3                 # edge-convolution layers in the PDN
    seeds: int = 50                     # M0 seed proposals per video in training
    iou_threshold: float = 0.5          # tau: a proposal is positive when its best tIoU exceeds it
    center_features: bool = False       # subtract each video's per-channel mean over time first (not in the paper)
    seg_weight: float = 1.0             # the weight of L_seg (0: Table 3's "without segmentation loss")
    det_weight: float = 1.0             # lambda_1
    aux_weight: float = 1.0             # lambda_2

    def __post_init__(self):
        for name in ("feature_dim", "num_classes", "num_snippets", "hidden", "graph_k", "eta", "proposal_samples",
                     "pdn_k", "pdn_layers", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (self.atrous or self.graph or self.global_pool):
            raise ValueError("at least one PAG branch must be on: atrous, graph or global_pool, got all False")
        self.encoder_strides = tuple(self.encoder_strides)
        if len(self.encoder_strides) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                                for s in self.encoder_strides):
            raise ValueError(f"encoder_strides must be a tuple of at least 2 positive ints (the highway reads the "
                             f"second layer), got {self.encoder_strides!r}")
        if self.num_snippets < self.stride:
            raise ValueError(f"num_snippets must be at least {self.stride} (the encoder divides T by "
                             f"{self.stride}), got {self.num_snippets}")
        if self.graph and self.graph_k >= self.encoded_length:
            raise ValueError(f"num_snippets={self.num_snippets} encodes to ceil(T/{self.stride}) = "
                             f"{self.encoded_length} snippets, too few for graph_k={self.graph_k} neighbours each; "
                             f"use num_snippets >= {self.stride * (self.graph_k + 1)} or a smaller graph_k")
        if self.dilations is None:
            self.dilations = scaled_dilations(self.encoded_length)
        self.dilations = tuple(self.dilations)
        if not self.dilations or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be a non-empty tuple of positive ints, got {self.dilations!r}")
        if self.max_duration is not None and (isinstance(self.max_duration, bool)
                                              or not isinstance(self.max_duration, int) or self.max_duration < 1):
            raise ValueError(f"max_duration must be None or a positive int, got {self.max_duration!r}")
        if not 0 <= self.proposal_context < 10:
            raise ValueError(f"proposal_context must be in [0, 10), got {self.proposal_context!r}")
        if not 0 <= self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        for name in ("seg_weight", "det_weight", "aux_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def stride(self) -> int:
        """How many snippets one encoded position covers: the product of the encoder's strides (the paper: 8)."""
        return math.prod(self.encoder_strides)

    @property
    def encoded_length(self) -> int:
        """T' = ceil(T / stride), the length the PAG module sees (the paper: T / 8)."""
        return math.ceil(self.num_snippets / self.stride)


def scaled_dilations(encoded_length: int, paper=PAPER_DILATIONS, paper_length: int = PAPER_ENCODED_LENGTH):
    """The paper's dilations, scaled from its encoded length (1000 / 8 = 125) to ``encoded_length``.

    d_b = max(round(d_b^paper * T' / 125), d_{b-1} + 1): the same fractions of the sequence, kept distinct and at
    least 1. 125 -> (1, 10, 20, 30); 13 (T = 100) and 16 (T = 128) -> (1, 2, 3, 4); 32 (T = 256) -> (1, 3, 5, 8).
    """
    dilations = []
    for d in paper:
        scaled = max(1, round(d * encoded_length / paper_length))
        dilations.append(max(scaled, dilations[-1] + 1) if dilations else scaled)
    return tuple(dilations)


# ---------------------------------------------------------------------------------------------------- 1D-SSN
class PAG(nn.Module):
    """Parallel atrous and graph convolutions (Sec. 3.2.2, Eq. 1-2): (B, C', T') -> (B, C', T'), and the snippet
    graph it used (B, T', graph_k) (None without the graph branch)."""

    def __init__(self, config: SegTADConfig):
        super().__init__()
        hidden = config.hidden
        self.graph_k = config.graph_k
        self.edge_conv = EdgeConv(hidden, hidden) if config.graph else None
        self.atrous = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel_size=3, padding=d, dilation=d)
                                    for d in config.dilations) if config.atrous else nn.ModuleList()
        self.global_pool = config.global_pool
        branches = int(config.graph) + len(self.atrous) + int(config.global_pool)
        self.fuse = nn.Conv1d(branches * hidden, hidden, kernel_size=1)

    def forward(self, encoded: torch.Tensor):
        branches, neighbours = [], None
        if self.edge_conv is not None:  # X_GC (Eq. 1) on the graph of the K most similar snippets
            neighbours = knn_graph(encoded, self.graph_k)  # (B, T', K)
            branches.append(self.edge_conv(encoded.transpose(1, 2), neighbours).transpose(1, 2))
        branches += [torch.relu(conv(encoded)) for conv in self.atrous]  # X_AC^1 .. X_AC^B
        if self.global_pool:  # X_GP: one value per channel, spread back over T'
            branches.append(encoded.mean(dim=2, keepdim=True).expand_as(encoded))
        return torch.relu(self.fuse(torch.cat(branches, dim=1))), neighbours


class SSN1D(nn.Module):
    """The 1D semantic segmentation network: features (B, C, T) -> dict of ``features`` Y (B, C', T), ``logits``
    (B, K+1, T), ``start_logits`` and ``end_logits`` (B, T), ``snippet_graph`` (B, ceil(T/8), graph_k) or None.

    Accepts any T >= 8 (the pattern's T is fixed by :class:`SegTAD`, not here).
    """

    def __init__(self, config: SegTADConfig):
        super().__init__()
        channels, hidden = config.feature_dim, config.hidden
        self.center_features = bool(config.center_features)
        self.stride = config.stride
        self.encoder = nn.ModuleList(
            nn.Conv1d(channels if i == 0 else hidden, hidden, kernel_size=3, stride=stride, padding=1)
            for i, stride in enumerate(config.encoder_strides))
        self.pag = PAG(config)
        self.highway = nn.Sequential(nn.Conv1d(hidden, hidden, kernel_size=1), nn.BatchNorm1d(hidden), nn.ReLU())
        self.decoder_fuse = nn.Conv1d(2 * hidden, hidden, kernel_size=3, padding=1)
        self.segmentation_head = nn.Conv1d(hidden, config.num_classes + 1, kernel_size=1)  # W_seg (Eq. 3)

        def boundary_head():  # Eq. 6-7: Conv1d(k=3) + ReLU, then the linear w_2 (a 1x1 conv)
            return nn.Sequential(nn.Conv1d(hidden, hidden, kernel_size=3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, 1, kernel_size=1))

        self.start_head, self.end_head = boundary_head(), boundary_head()

    def forward(self, features: torch.Tensor) -> dict:
        length = features.shape[2]
        if self.center_features:  # the video's per-channel offset removed (a video-level context)
            features = features - features.mean(dim=2, keepdim=True)
        padded_length = math.ceil(length / self.stride) * self.stride
        x = F.pad(features, (0, padded_length - length), mode="replicate") if padded_length > length else features
        for i, conv in enumerate(self.encoder):  # the paper's strides: (B, C', T/2), (B, C', T/4), (B, C', T/8)
            x = torch.relu(conv(x))
            if i == 1:
                low_level = x  # the highway's input, (B, C', T/4) at the paper's strides
        context, neighbours = self.pag(x)  # (B, C', T')
        upsampled = F.interpolate(context, size=padded_length, mode="linear", align_corners=False)
        highway = F.interpolate(self.highway(low_level), size=padded_length, mode="linear", align_corners=False)
        y = torch.relu(self.decoder_fuse(torch.cat([upsampled, highway], dim=1)))  # Y (B, C', T padded)
        return {"features": y[..., :length], "logits": self.segmentation_head(y)[..., :length],
                "start_logits": self.start_head(y)[:, 0, :length], "end_logits": self.end_head(y)[:, 0, :length],
                "snippet_graph": neighbours}


# ---------------------------------------------------------------------------------------------------- SegTAD
class SegTAD(nn.Module):
    """SegTAD = 1D-SSN + PDN. Arguments: the fields of :class:`SegTADConfig`, plus ``stage``
    ("joint", "ssn" or "pdn": which parts train, settable later as ``model.stage``).

    ``forward(features (B, C, T))`` returns a dict: ``logits`` and ``probs`` (B, K+1, T) (segmentation),
    ``start`` and ``end`` (B, T) (sigmoid) with their ``start_logits``/``end_logits``, ``features`` Y (B, C', T),
    ``snippet_graph`` (B, ceil(T/8), graph_k) int64 or None; in eval mode (and unless ``stage="ssn"``) also the PDN
    on every proposal: ``proposals`` (P, 2), ``proposal_logits`` (B, P, 2), ``iou_scores`` s1 and ``action_scores``
    s2 (B, P). In training mode the PDN runs in :meth:`loss`, on sampled neighbourhoods.
    """

    def __init__(self, feature_dim: int, num_classes: int, num_snippets: int, *, stage: str = "joint", **config):
        super().__init__()
        self.config = SegTADConfig(feature_dim, num_classes, num_snippets, **config)
        cfg = self.config
        self.feature_dim, self.num_classes, self.num_snippets = feature_dim, num_classes, num_snippets
        self.ssn = SSN1D(cfg)
        self.pdn = ProposalDetectionNetwork(cfg.hidden, num_snippets, cfg.eta, cfg.max_duration,
                                            cfg.proposal_samples, cfg.proposal_context, cfg.pdn_graph, cfg.pdn_k,
                                            cfg.pdn_layers)
        self.stage = stage

    @property
    def stage(self) -> str:
        return self._stage

    @stage.setter
    def stage(self, value: str) -> None:
        check_choice("stage", value, set(STAGES))
        self._stage = value
        self.train(self.training)  # "pdn" keeps the 1D-SSN's BatchNorm in eval mode

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_stage", None) == "pdn":
            self.ssn.eval()  # frozen: its running statistics stay as the "ssn" stage left them
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor) -> dict:
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.feature_dim or features.shape[2] != self.num_snippets:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, {self.num_snippets}) "
                             f"(B, feature_dim, num_snippets), got {tuple(features.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage != "pdn"):
            outputs = self.ssn(features)
        outputs["probs"] = outputs["logits"].softmax(dim=1)
        outputs["start"], outputs["end"] = torch.sigmoid(outputs["start_logits"]), torch.sigmoid(outputs["end_logits"])
        if not self.training and self.stage != "ssn":
            logits = self.pdn(outputs["features"])  # (B, P, 2)
            outputs.update(proposals=self.pdn.proposals, proposal_logits=logits,
                           iou_scores=torch.sigmoid(logits[..., 0]), action_scores=torch.sigmoid(logits[..., 1]))
        return outputs

    # ------------------------------------------------------------------ cost
    def cost(self, batch_size: int = 1) -> dict:
        """Parameter count and forward FLOPs in eval mode, the PDN scoring all P proposals
        (``torch.utils.flop_counter``, one multiply-add = 2 FLOPs). Returns ``{"params": int, "flops": int}``."""
        return forward_cost(self, self.num_snippets, batch_size)

    # ------------------------------------------------------------------ loss
    def targets(self, batch: dict) -> dict:
        """Targets from a collated batch: ``frames`` (B, T, K+1) one-hot (Eq. 4), ``starts``/``ends`` (B, T)
        (Eq. 5), ``proposal_iou`` h_reg and ``proposal_positive`` h_cls (B, P) (Eq. 10)."""
        from tadlab.labels import boundary_labels, frame_labels, sparse_proposal_targets

        segments, labels = batch["segments"], batch["labels"]
        cfg = self.config
        frames = frame_labels(segments, labels, self.num_snippets, self.num_classes)
        starts, ends = boundary_labels(segments, self.num_snippets, labels=labels)
        proposals = sparse_proposal_targets(segments, self.num_snippets, cfg.eta, cfg.iou_threshold, labels=labels,
                                            max_duration=cfg.max_duration)
        return {"frames": frames, "starts": starts, "ends": ends, "proposal_iou": proposals["iou"],
                "proposal_positive": proposals["positive"]}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """L = seg_weight L_seg + det_weight L_det + aux_weight L_aux (Eq. 11 without L_r), over the stage's terms.

        L_seg (Eq. 4): cross-entropy of the segmentation against the frame labels, mean over snippets and videos.
        L_aux (Eq. 5): BCE of the start plus BCE of the end probabilities, each a mean over snippets and videos.
        L_det (Eq. 10): on M0 (1 + K + K^2) sampled proposals per video, MSE of s1 against h_reg (tIoU) plus BCE
        of s2 against h_cls = 1(h_reg > tau). Returns ``total``, ``segmentation``, ``auxiliary``, ``detection``,
        ``regression``, ``classification`` (terms a stage skips are 0) and ``positive``, the fraction of positive
        proposals in the sampled lists.
        """
        logits = outputs["logits"]
        batch = {k: v.to(logits.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        targets = self.targets(batch)
        cfg, zero = self.config, logits.new_zeros(())
        segmentation = auxiliary = regression = classification = positive_fraction = zero
        if self.stage != "pdn":
            segmentation = F.cross_entropy(logits, targets["frames"].transpose(1, 2).to(logits.dtype))
            auxiliary = (F.binary_cross_entropy_with_logits(outputs["start_logits"], targets["starts"].to(logits.dtype))
                         + F.binary_cross_entropy_with_logits(outputs["end_logits"], targets["ends"].to(logits.dtype)))
        if self.stage != "ssn":
            positive = targets["proposal_positive"]
            ids = sample_neighbourhoods(positive, self.pdn.neighbour_table, cfg.seeds, cfg.pdn_k)  # (B, S)
            ids, multiplicity = deduplicate(ids, self.pdn.num_proposals)  # the same loss, each proposal once
            features = outputs["features"] if self.stage == "joint" else outputs["features"].detach()
            scores = self.pdn(features, ids)  # (B, U, 2)
            weight = multiplicity.to(scores.dtype) / multiplicity.sum()  # the list's mean, repeats counted
            iou_target = targets["proposal_iou"].gather(1, ids).to(scores.dtype)
            positive_target = positive.gather(1, ids).to(scores.dtype)
            regression = (weight * (torch.sigmoid(scores[..., 0]) - iou_target) ** 2).sum()
            classification = (weight * F.binary_cross_entropy_with_logits(scores[..., 1], positive_target,
                                                                          reduction="none")).sum()
            positive_fraction = (weight * positive_target).sum()
        detection = regression + classification
        total = cfg.seg_weight * segmentation + cfg.det_weight * detection + cfg.aux_weight * auxiliary
        return {"total": total, "segmentation": segmentation, "auxiliary": auxiliary, "detection": detection,
                "regression": regression, "classification": classification, "positive": positive_fraction}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, outputs: dict, *, decoding: str | None = None, top_k: int = 100, top_classes: int = 1,
               classes: str = "proposal", thresholds=DEFAULT_THRESHOLDS, nms: dict | None = None,
               class_scores: torch.Tensor | None = None) -> list[dict]:
        """Detections per video: ``decoding="proposals"`` (the paper, :func:`decode_proposals`, with ``top_classes``
        and ``classes``, or an external video classifier's ``class_scores`` (B, K), as the paper's Sec. 3.4 and
        :class:`~tadlab.models.ProposalDetector` give them) or
        ``"segmentation"`` (the 1D-SSN alone: class-map grouping of ``probs``, :func:`tadlab.grouping.group_class_map`
        at ``thresholds``); None picks "segmentation" when ``stage="ssn"`` (no trained PDN), else "proposals"."""
        if decoding is None:
            decoding = "segmentation" if self.stage == "ssn" else "proposals"
        check_choice("decoding", decoding, {"proposals", "segmentation"})
        probs = outputs["probs"].float()  # float32 whatever autocast made: segment ends up to T stay exact
        if decoding == "segmentation":
            if class_scores is not None:
                raise ValueError("class_scores are for decoding='proposals'; the segmentation decoding reads the "
                                 "1D-SSN's own class map")
            _check_positive("top_k", top_k)
            return group_class_map(probs, thresholds, top_k=top_k, nms=nms)
        if "iou_scores" not in outputs:
            raise ValueError("outputs have no PDN scores: decoding='proposals' needs the outputs of an eval-mode "
                             "forward (model.eval()) with stage 'joint' or 'pdn'")
        scores = outputs["iou_scores"].float() * outputs["action_scores"].float()  # s1 x s2 (Sec. 3.4)
        return decode_proposals(outputs["proposals"], scores, probs, top_k=top_k, top_classes=top_classes,
                                classes=classes, nms=nms, class_scores=class_scores)


# ---------------------------------------------------------------------------------------------------- decoding
def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def segment_class_scores(probs: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Mean segmentation probability of every class over each segment's snippets.

    probs (B, K+1, T), segments (B, M, 2) snippet units -> (B, M, K+1): snippet t counts for [s, e) when its centre
    t + 0.5 lies inside (a segment that holds no centre takes the snippet its midpoint lies in).
    """
    length = probs.shape[2]
    cumulative = F.pad(probs.cumsum(dim=2), (1, 0))  # (B, K+1, T+1): cumulative[..., t] = sum over snippets < t
    first = torch.ceil(segments[..., 0] - 0.5).long()  # the first centre >= s
    last = torch.ceil(segments[..., 1] - 0.5).long()  # one past the last centre < e
    middle = torch.floor(segments.mean(dim=-1)).long()
    empty = last <= first
    first = torch.where(empty, middle, first).clamp(0, length - 1)
    last = torch.where(empty, middle + 1, last).clamp(1, length)
    gather = lambda index: cumulative.gather(2, index[:, None, :].expand(-1, probs.shape[1], -1))
    return ((gather(last) - gather(first)) / (last - first)[:, None, :].to(probs.dtype)).transpose(1, 2)


def video_class_scores(probs: torch.Tensor) -> torch.Tensor:
    """The 1D-SSN as a video classifier: probs (B, K+1, T) -> (B, K), each action's probability averaged over the
    video's snippets, renormalised over the K actions (rows sum to 1)."""
    action = probs[:, :-1].mean(dim=2)  # (B, K)
    return action / action.sum(dim=1, keepdim=True).clamp_min(torch.finfo(action.dtype).tiny)


def decode_proposals(proposals: torch.Tensor, scores: torch.Tensor, probs: torch.Tensor, *, top_k: int = 100,
                     top_classes: int = 1, classes: str = "proposal", nms: dict | None = None,
                     class_scores: torch.Tensor | None = None) -> list[dict]:
    """SegTAD inference (Sec. 3.4): proposals (P, 2), scores s1 x s2 (B, P), segmentation probs (B, K+1, T) ->
    one dict per video of ``segments`` (M, 2), ``scores`` (M,), ``labels`` (M,) int64, best first.

    Class-agnostic Soft-NMS (:func:`tadlab.segments.soft_nms`, ``nms`` its keyword arguments; default Gaussian,
    sigma 0.5) keeps the ``top_k`` best proposals; each takes its ``top_classes`` best action classes, and the
    score becomes the Soft-NMS score times that class's probability. ``classes="proposal"``: by mean segmentation
    probability over the proposal's snippets (:func:`segment_class_scores`); ``"video"``: by the video's class
    scores (:func:`video_class_scores`), the same for every proposal of a video, as the paper's external video
    classifier gives. ``class_scores`` (B, K): an external video classifier's probabilities, used as "video" uses
    the 1D-SSN's (then ``classes`` is ignored).
    """
    from tadlab.segments import soft_nms

    _check_positive("top_k", top_k)
    _check_positive("top_classes", top_classes)
    check_choice("classes", classes, {"proposal", "video"})
    if scores.dim() != 2 or scores.shape[1] != proposals.shape[0] or probs.shape[0] != scores.shape[0]:
        raise ValueError(f"scores must be (B, P) with P = {proposals.shape[0]} proposals and B = {probs.shape[0]} "
                         f"like probs, got {tuple(scores.shape)}")
    num_classes = probs.shape[1] - 1
    if class_scores is not None and (not isinstance(class_scores, torch.Tensor)
                                     or tuple(class_scores.shape) != (scores.shape[0], num_classes)):
        shape = tuple(class_scores.shape) if isinstance(class_scores, torch.Tensor) else type(class_scores).__name__
        raise ValueError(f"class_scores must be a tensor (B, K) = ({scores.shape[0]}, {num_classes}), got {shape}")
    top_classes = min(top_classes, num_classes)
    nms = {"method": "gaussian", "sigma": 0.5} if nms is None else dict(nms)
    detections = []
    for b in range(scores.shape[0]):  # Soft-NMS is greedy per video
        segments, kept, _ = soft_nms(proposals.to(scores.dtype), scores[b], top_k=top_k, **nms)
        if class_scores is not None:
            class_prob = class_scores[b:b + 1].to(kept.dtype).expand(len(segments), -1)  # (M, K)
        elif classes == "proposal":
            class_prob = segment_class_scores(probs[b:b + 1], segments[None])[0, :, :num_classes]  # (M, K)
        else:
            class_prob = video_class_scores(probs[b:b + 1]).expand(len(segments), -1)  # (M, K)
        best_prob, best_class = class_prob.topk(top_classes, dim=1)  # (M, top_classes)
        final = (kept[:, None] * best_prob.to(kept.dtype)).flatten()
        order = final.argsort(descending=True)
        detections.append({"segments": segments.repeat_interleave(top_classes, dim=0)[order], "scores": final[order],
                           "labels": best_class.flatten()[order].to(torch.int64)})
    return detections
