"""GSMT: proposal-free temporal action detection with global segmentation masks (Nag et al., "Temporal Action
Localization with Global Segmentation Mask Transformers"; its ECCV 2022 version is TAGS, "Proposal-Free Temporal
Action Detection via Global Segmentation Mask Learning").

Every snippet predicts two things (Fig. 2): its class ``P`` (K actions + background) and the *whole video's*
foreground mask of the action it belongs to (a column of ``M``). Detection needs no proposals: take the
best-scoring action snippets, threshold their mask columns, read segments off the activations (Sec. 3.3;
:mod:`tadlab.models.gsmt_decode`, which can also group the class map, or pool both as the authors' release does).

    features (B, C, T) -> input projection (1x1 conv) -> snippet embedding E (B, H, T)
        -> classification branch: one 1D conv -> 2(K+1) channels: P = softmax of the first K+1 (Eq. 3),
           r = sigmoid of the other K+1 (the regression output of the logistic loss, Eq. 5; unused at test time)
        -> mask branch: three 1D convs -> (B, T, T); M = sigmoid, column t = mask predicted at snippet t (Eq. 4)

Choices the paper leaves open, stated here (see also :meth:`GSMT.detect`):
- the hidden width, the kernel sizes (3, 3 for the first two mask convs, 1 for the last, 3 for the class conv)
  and dropout are ours; the paper gives 4 heads, pre-LN, a one-FC residual MLP and the layer counts of Table 8.
- the per-class regression output ``r`` of the logistic-regression loss comes from the same single conv as P's
  logits (2(K+1) output channels, so the branch stays one layer as in Table 8), with K+1 entries so background
  snippets get that loss too.
- ``center_features=True`` (off by default; not in the paper) subtracts each video's per-channel mean over time
  before the projection, removing a per-video constant offset (the synthetic world adds one; LayerNorm, which
  normalises each snippet across channels, does not).
- ``mask_weight`` (default 1, the paper's L = L_c + L_m) scales L_m, a knob the paper does not have; notebook 04
  chooses it on validation videos (its recipe sweep, stored in ``results/04_recipe_validation.json``) and keeps 1.
- ``mask_branch=False`` is the "w/o mask branch" ablation of Table 7: no mask head and no mask loss; detection then
  groups the class map (``source="class_map"``, the only source it has). Which decoder the paper's row used is not
  said; decoding a model *with* masks by ``source="class_map"`` separates the decoder from the training.
- ``positional``: GSMT Table 13 (ActivityNet) compares no positional encoding (average mAP 36.2, the paper's
  default), a learned one (33.4) and a fixed sinusoidal one (28.0): :data:`PAPER_POSITIONAL` holds the rows, and
  ``positional=None`` (or ``"none"``), ``"learned"`` or ``"fixed"`` builds each (:class:`~tadlab.models.blocks.
  PositionalEncoding`, added to the projected features before the embedding, for every ``embedding``). Without one
  the Transformer's embedding of a snippet holds no trace of its place (self-attention is permutation-equivariant;
  only the heads' zero padding marks the video's first and last snippets), while the mask head's last conv gives
  one channel per absolute position (a CNN knows relative position only; see :mod:`tadlab.models.blocks`). The
  paper finds no encoding best all the same; tadlab's notebooks have used ``"fixed"`` on the synthetic world.
- ``mask_border`` and ``dice_form``: the erosion's border in bIoU (``"geodesic"``: the video's edge is not a
  boundary; ``"zero"``: it is, as in the Boundary IoU metric) and the dice term's form (``"vnet"``, tadlab's
  choice, or ``"printed"``, Eq. 6 as printed and released); see :mod:`tadlab.losses`.
- Sec. 4 trains with SGD for 15 epochs (lr 1e-4, weight decay 1e-3, batch 200 on ActivityNet): ``tadlab.train.fit(
  model, data, optimizer="sgd", momentum=...)``; the paper gives no momentum.
"""
from __future__ import annotations

import torch
from torch import nn

from tadlab.models.blocks import forward_cost, make_embedding
from tadlab.models.gsmt_decode import (  # noqa: F401 (inference lives in gsmt_decode; re-exported here)
    DEFAULT_THRESHOLDS, PAPER_SOFT_NMS, PAPER_SOFT_NMS_SIGMA, _positive_int, decode_global_masks, soft_nms_options)
from tadlab.utils import check_choice

PAPER_COST = {"params_M": 2.9, "flops_G": 0.6}  # GSMT Table 3 (ActivityNet, two-stream features)
# GSMT Table 13 (ActivityNet): mAP at tIoU 0.5 and average mAP (0.5:0.05:0.95), in %, per positional encoding
PAPER_POSITIONAL = {"none": {"mAP@0.5": 56.0, "average_mAP": 36.2}, "learned": {"mAP@0.5": 53.9, "average_mAP": 33.4},
                    "fixed": {"mAP@0.5": 44.7, "average_mAP": 28.0}}


class GSMT(nn.Module):
    """Global Segmentation Mask Transformer.

    Args:
        feature_dim: C, the input feature width (400 for ActivityNet's two-stream features).
        num_classes: K action classes (background is index K in the (K+1)-way head).
        num_snippets: T; the mask branch outputs T channels, so a model serves one T.
        hidden: width of the embedding and heads.
        heads: attention heads (4, GSMT Table 9). layers: Transformer encoder layers.
        embedding: ``"transformer"`` (default), ``"cnn"`` (1D CNN, dilations 1/3/5) or ``"mstcn"`` (Table 4).
        positional: ``None`` or ``"none"`` (default: no encoding, Table 13's best row), ``"learned"`` or
            ``"fixed"``, for any ``embedding``.
        mask_loss: ``"biou"`` (bIoU + L2 penalty + dice, Eq. 6), ``"iou"`` (soft IoU + dice, TAGS Table 2) or
            ``"bce"`` (binary cross-entropy, TAGS Table 5's conventional loss).
        mask_border: ``"geodesic"`` (default) or ``"zero"``, the erosion's border in the bIoU bands (and lambda).
        dice_form: ``"vnet"`` (default) or ``"printed"``, the dice term of ``"biou"`` and ``"iou"``.
        mask_branch: False drops the mask head (Table 7 ablation).
        center_features: subtract each video's per-channel mean over time first (not in the paper).
        focal_gamma, logistic_alpha, classification_weight: gamma = 2, alpha = 10, lambda_1 = 0.4 of Eq. 5.
        mask_kernel, dice_weight: k = 7 and lambda_2 = 0.4 of Eq. 6.
        mask_l2_penalty: the lambda * L2 term of Eq. 6 / TAGS supp. Eq. 3: None (default) as the mask loss is
            published (on for ``"biou"``, off for ``"iou"``), True/False to switch it for ``"biou"`` or ``"iou"``
            (see :func:`tadlab.losses.mask_loss`; ``"iou"`` with it measures the penalty apart from the band).
        mask_weight: the factor of L_m in the total loss (1 in the paper; see above).
        dropout: dropout in the embedding.

    ``forward(features (B, C, T))`` returns a dict:
        ``logits`` (B, K+1, T), ``probs`` P (B, K+1, T) softmax over classes, ``regression_logits`` and
        ``regression`` r (B, K+1, T) sigmoid,
        ``mask_logits`` and ``masks`` M (B, T, T), ``M[b, :, t]`` the mask predicted at snippet t (absent
        without the mask branch).
    """

    def __init__(self, feature_dim: int, num_classes: int, num_snippets: int, hidden: int = 256, heads: int = 4,
                 layers: int = 1, embedding: str = "transformer", positional: str | None = None,
                 mask_loss: str = "biou", mask_branch: bool = True, focal_gamma: float = 2.0,
                 logistic_alpha: float = 10.0, classification_weight: float = 0.4, mask_kernel: int = 7,
                 dice_weight: float = 0.4, dropout: float = 0.1, center_features: bool = False,
                 mask_l2_penalty: bool | None = None, mask_weight: float = 1.0, mask_border: str = "geodesic",
                 dice_form: str = "vnet"):
        super().__init__()
        from tadlab.losses import BORDERS, DICE_FORMS  # (imported here: the losses pull in kornia and numba)

        for name, value in [("feature_dim", feature_dim), ("num_classes", num_classes),
                            ("num_snippets", num_snippets), ("hidden", hidden), ("heads", heads), ("layers", layers)]:
            _positive_int(name, value)
        check_choice("mask_loss", mask_loss, {"biou", "iou", "bce"})
        check_choice("mask_border", mask_border, set(BORDERS))
        check_choice("dice_form", dice_form, set(DICE_FORMS))
        if positional == "none":  # Table 13's row name, for configs that cannot say None
            positional = None
        self.positional, self.mask_border, self.dice_form = positional, mask_border, dice_form
        if not 0.0 <= classification_weight <= 1.0:
            raise ValueError(f"classification_weight (lambda_1) must be in [0, 1], got {classification_weight}")
        self.feature_dim, self.num_classes, self.num_snippets = feature_dim, num_classes, num_snippets
        self.mask_loss_kind, self.has_mask_branch = mask_loss, bool(mask_branch)
        if mask_l2_penalty is not None and not isinstance(mask_l2_penalty, bool):
            raise TypeError(f"mask_l2_penalty must be None, True or False, got {mask_l2_penalty!r}")
        if mask_loss == "bce" and mask_l2_penalty:
            raise ValueError("mask_l2_penalty=True needs mask_loss 'biou' or 'iou'; 'bce' has no lambda * L2 penalty")
        self.center_features, self.mask_l2_penalty = bool(center_features), mask_l2_penalty
        if isinstance(mask_weight, bool) or not isinstance(mask_weight, (int, float)):
            raise TypeError(f"mask_weight must be a number, got {type(mask_weight).__name__} {mask_weight!r}")
        if not mask_weight > 0:
            raise ValueError(f"mask_weight must be positive, got {mask_weight!r}")
        self.mask_weight = float(mask_weight)
        self.focal_gamma, self.logistic_alpha = focal_gamma, logistic_alpha
        self.classification_weight, self.mask_kernel, self.dice_weight = classification_weight, mask_kernel, dice_weight

        self.input_projection = nn.Conv1d(feature_dim, hidden, kernel_size=1)
        self.embedding = make_embedding(embedding, hidden, heads=heads, layers=layers, dropout=dropout,
                                        positional=positional, num_snippets=num_snippets)
        self.classifier = nn.Conv1d(hidden, 2 * (num_classes + 1), kernel_size=3, padding=1)  # H_c: logits of P, r
        if self.has_mask_branch:
            self.mask_head = nn.Sequential(  # H_b: three 1D convs, the last one gives T channels
                nn.Conv1d(hidden, hidden, kernel_size=3, padding=1), nn.ReLU(),
                nn.Conv1d(hidden, hidden, kernel_size=3, padding=1), nn.ReLU(),
                nn.Conv1d(hidden, num_snippets, kernel_size=1))

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor) -> dict:
        """``features (B, C, T)`` -> dict of ``logits``, ``probs``, ``regression`` (B, K+1, T), ``masks`` (B, T, T)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (B, C, T), got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.feature_dim or features.shape[2] != self.num_snippets:
            raise ValueError(f"features must have shape (B, {self.feature_dim}, {self.num_snippets}) "
                             f"(B, feature_dim, num_snippets), got {tuple(features.shape)}")
        if self.center_features:
            features = features - features.mean(dim=2, keepdim=True)
        embedded = self.embedding(self.input_projection(features))
        logits, regression_logits = self.classifier(embedded).chunk(2, dim=1)
        outputs = {"logits": logits, "probs": logits.softmax(dim=1), "regression_logits": regression_logits,
                   "regression": torch.sigmoid(regression_logits)}
        if self.has_mask_branch:
            # Conv output (B, T channels = mask position k, T positions = predicting snippet t): column t is m_t.
            mask_logits = self.mask_head(embedded)
            outputs["mask_logits"], outputs["masks"] = mask_logits, torch.sigmoid(mask_logits)
        return outputs

    # ------------------------------------------------------------------ cost
    def cost(self, batch_size: int = 1) -> dict:
        """Parameter count and forward FLOPs (``torch.utils.flop_counter``, one multiply-add = 2 FLOPs).

        Returns ``{"params": int, "flops": int}`` for ``batch_size`` videos of T = ``num_snippets``.
        """
        return forward_cost(self, self.num_snippets, batch_size, grad=True)  # grad on: attention's fast path

    # ------------------------------------------------------------------ loss
    def targets(self, batch: dict) -> dict:
        """Training targets from a collated batch: ``classes`` (B, T) int64 (background K), ``masks`` (B, T, T)
        with column t the mask of the instance snippet t lies in, ``valid`` (B, T) bool (snippets with a mask)."""
        from tadlab.labels import global_masks, snippet_labels

        segments, labels = batch["segments"], batch["labels"]
        classes = snippet_labels(segments, labels, self.num_snippets, self.num_classes)
        masks, valid = global_masks(segments, self.num_snippets, labels=labels)
        return {"classes": classes, "masks": masks, "valid": valid}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """L = L_c + mask_weight * L_m (Sec. 3.3, where mask_weight = 1), every term reported (0-dim tensors).

        L_c = lambda_1 * focal(P, y) + (1 - lambda_1) * class-balanced logistic regression(r, y) over all snippets
        (Eq. 5, gamma = 2, alpha = 10, K/10 hard negative classes); L_m = the mask loss over foreground snippets'
        mask columns (Eq. 6 for ``mask_loss="biou"``). Returns ``total``, ``classification``, ``focal``,
        ``logistic``, ``mask`` (L_m before ``mask_weight``; 0 without the mask branch) and ``foreground`` (the
        fraction of foreground snippets).
        """
        from tadlab.losses import class_balanced_logistic_loss, focal_loss, mask_loss

        logits = outputs["logits"]
        batch = {k: v.to(logits.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        targets = self.targets(batch)
        classes = targets["classes"]
        focal = focal_loss(logits, classes, gamma=self.focal_gamma)
        logistic = class_balanced_logistic_loss(outputs["regression_logits"], classes, alpha=self.logistic_alpha)
        classification = self.classification_weight * focal + (1 - self.classification_weight) * logistic
        valid = targets["valid"]
        if self.has_mask_branch:
            # dim=1: column t of (B, T, T) is one mask; one loss per column, averaged over foreground snippets only.
            per_column = mask_loss(outputs["masks"], targets["masks"].to(logits.dtype), variant=self.mask_loss_kind,
                                   kernel_size=self.mask_kernel, lambda2=self.dice_weight, dim=1, reduction="none",
                                   l2_penalty=self.mask_l2_penalty, border=self.mask_border,
                                   dice_form=self.dice_form)
            weights = valid.to(per_column.dtype)
            mask = (per_column * weights).sum() / weights.sum().clamp_min(1.0)
        else:
            mask = logits.new_zeros(())
        return {"total": classification + self.mask_weight * mask, "classification": classification,
                "focal": focal, "logistic": logistic, "mask": mask, "foreground": valid.to(logits.dtype).mean()}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, outputs: dict, *, source: str | None = None, decoding: str = "long", top_snippets: int = 50,
               thresholds=DEFAULT_THRESHOLDS, score_threshold: float = 0.1, top_k: int = 200,
               mask_score: str = "inner", nms: dict | str | None = None, top_selection: str = "snippets") -> list[dict]:
        """Detections per video (Sec. 3.3); see :func:`~tadlab.models.gsmt_decode.decode_global_masks` for every
        argument. ``source``: ``"masks"`` (the paper's decoding; the default with a mask branch), ``"class_map"``
        (class-map grouping; the default and the only source without one) or ``"both"``."""
        if self.has_mask_branch:
            masks = outputs.get("masks")
        elif source not in (None, "class_map"):
            raise ValueError(f"source={source!r} needs the mask branch; this GSMT has mask_branch=False, so it "
                             f"decodes with source='class_map' only")
        else:
            masks = None
        return decode_global_masks(outputs["probs"], masks, source=source, decoding=decoding,
                                   top_snippets=top_snippets, thresholds=thresholds, score_threshold=score_threshold,
                                   top_k=top_k, mask_score=mask_score, nms=nms, top_selection=top_selection)

    def oracle_outputs(self, outputs: dict, batch: dict, *, classes: bool = False, masks: bool = False,
                       keep_background_masks: bool = False) -> dict:
        """GSMT Table 6's oracles: ``outputs`` with the class map and/or the masks replaced by ``batch``'s ground truth.

        ``classes=True``: ``probs`` becomes the one-hot ground-truth class map (B, K+1, T) of :meth:`targets`
        (background K outside instances; ``logits`` = its log, floored at the dtype's smallest normal number, whose
        softmax is ``probs`` to float precision). ``masks=True``: ``masks`` becomes the ground-truth masks
        (B, T, T) (column t = the mask of the instance snippet t lies in, zeros for background snippets;
        ``mask_logits`` = their logit, clamped one machine epsilon inside (0, 1)). The empty background columns
        also tell where no instance is, an actionness oracle besides the masks' shapes; ``keep_background_masks=True``
        keeps the predicted columns of background snippets, so only the instance snippets' masks are true. Other
        entries are left as predicted (``regression`` is unused at test time). Returns a new dict; ``outputs`` is not
        changed. Pass the result to :meth:`detect`.

        With the one-hot class map every foreground snippet ties at 1, so ``detect``'s ``top_snippets`` (M1 = 50)
        keeps an arbitrary 50 of them; pass ``top_snippets=T`` to let every foreground snippet propose.
        """
        if not (classes or masks):
            raise ValueError("oracle_outputs needs classes=True and/or masks=True, got both False")
        if masks and not self.has_mask_branch:
            raise ValueError("masks=True needs the mask branch; this GSMT has mask_branch=False")
        if keep_background_masks and not masks:
            raise ValueError("keep_background_masks=True is an option of masks=True, got masks=False")
        probs = outputs["probs"]
        device, dtype = probs.device, probs.dtype
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        targets = self.targets(batch)
        oracle = dict(outputs)
        if classes:
            one_hot = nn.functional.one_hot(targets["classes"], self.num_classes + 1).transpose(1, 2)
            oracle["probs"] = one_hot.to(dtype)
            oracle["logits"] = oracle["probs"].clamp_min(torch.finfo(dtype).tiny).log()
        if masks:
            epsilon = torch.finfo(dtype).eps
            true_masks = targets["masks"].to(dtype)
            true_logits = torch.logit(true_masks.clamp(epsilon, 1 - epsilon))
            if keep_background_masks:  # columns are snippets: (B, 1, T) picks the instance snippets' columns
                instance = targets["valid"][:, None, :]
                true_masks = torch.where(instance, true_masks, outputs["masks"])
                true_logits = torch.where(instance, true_logits, outputs["mask_logits"])
            oracle["masks"], oracle["mask_logits"] = true_masks, true_logits
        return oracle


def paper_size_cost(hidden: int = 512, layers: int = 1, embedding: str = "transformer") -> dict:
    """Cost of GSMT at the paper's ActivityNet size (T = 100 snippets, 400-d two-stream features, K = 200).

    The paper gives no width; ``hidden=512`` with one encoder layer is our guess. Returns ``params_M`` and
    ``flops_G`` (one video) beside the paper's Table 3 (2.9 M, 0.6 G).
    """
    model = GSMT(400, 200, 100, hidden=hidden, layers=layers, embedding=embedding)
    cost = model.cost()
    return {"hidden": hidden, "layers": layers, "embedding": embedding, "params_M": cost["params"] / 1e6,
            "flops_G": cost["flops"] / 1e9, "paper_params_M": PAPER_COST["params_M"],
            "paper_flops_G": PAPER_COST["flops_G"]}
