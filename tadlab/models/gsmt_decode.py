"""GSMT inference: the class map ``P`` (B, K+1, T) and the global masks ``M`` (B, T, T) -> detections (Sec. 3.3).

Inference has three steps, and only the first depends on where the candidates come from (``source``):

1. **Candidates** (class c, segment [start, end) in snippet units):
   - ``"masks"`` (the paper's decoding, Sec. 3.3): the top M1 snippets t of P, each with its best action class;
     snippet t's mask column ``M[:, t]`` thresholded at every theta in Theta = {0.1, ..., 0.9};
     ``decoding="long"`` takes the first to the last activated snippet, ``"short"`` every run of activated snippets.
     ``top_selection="pairs"`` ranks (class, snippet) pairs instead (see "Top M1" below);
   - ``"class_map"`` (class-map grouping, :func:`tadlab.grouping.class_map_candidates`): every run of every action
     row ``P[c, :]`` above every theta, whatever ``decoding``; the masks are ignored, so this is the decoder a class
     map alone gives (a model without the mask branch, or the decoder half of a decoding ablation);
   - ``"both"`` (as the authors' public TAGS release does): the class-map candidates re-scored by the masks, pooled
     with the mask candidates.
2. **Scores**, one definition whatever the source: a candidate has *voters*, the snippets that put it forward, and

       score = class confidence x mask confidence,
       class confidence = mean over the voters v of P[c, v],
       mask confidence  = mean over the voters v of the mask score of column M[:, v] on [start, end).

   A mask candidate has one voter, the snippet t whose column it was read from: its score is the paper's
   P[c, t] x mask score (the "classification score from P" times the "segmentation mask score from M"). A class-map
   candidate's voters are the snippets inside it (every one has P[c, v] >= theta: they are what made the run): its
   class confidence is grouping's score (the mean of P[c] over the run), and its mask confidence asks the masks of
   its own snippets whether they agree with the segment. So a segment found by both sources gets scores of the same
   kind, and pooling them is fair. Under ``source="class_map"`` there are no masks to ask: the candidates are scored
   as :func:`tadlab.grouping.group_class_map` scores them (mean of P[c] over the run minus its mean over the flanks),
   so GSMT's class map is decoded exactly as the class-map grouping baseline decodes its own. The mask score of a column m on [s, e) (``mask_score``):
   - ``"inner"`` (default; the paper's "maximal segmentation mask score", TAGS supp. Table 4's "inner score"):
     max of m over [s, e);
   - ``"contrast"``: that maximum minus the mean of m outside [s, e), clamped at 0 (our reading of TAGS's
     action-vs-background contrast, Table 4's best row; TAGS's Eq. 7 is not in our copy);
   - ``"mean"``: mean of m over [s, e) (the release scores its mask candidates by a mean over the segment). It is
     the one of the three that penalises a class-map run spanning two instances: a voter's column covers only its
     own instance, while its maximum over the run stays high (``"inner"``) and so does the contrast.
3. **Selection**: identical (class, start, end) candidates are merged keeping the best score (several thresholds and
   both sources often give the same segment; without merging Soft-NMS only decays the copies), scores <=
   ``score_threshold`` (theta_c = 0.1) dropped, the ``top_k`` (M2 = 200) best kept, class-aware Soft-NMS applied.

How the authors' release (github.com/sauradip/TAGS, ``tags_inference.py``; GSM's is the same) differs, read to
learn, not copied: its class-map candidates come from the maximum over classes of P, holes filled (first to last
activation, one per threshold), scored by that curve's maximum; each is re-scored by the column of every top snippet
(the column's maximum over the segment) rather than by the columns of the snippets inside; mask candidates are
scored by the column's mean times class scores (the video class's maximum over the segment, squared, times the top
snippet's); every candidate gets one video-level class. We keep one
score definition for all candidates instead, so the pooled list ranks like with like, and per-candidate classes.

Top M1: Sec. 3.3 reads "From P we select the top M1 scoring snippets S = {S_ti}, i = 1..M1, as action snippets,
where t_i in [1, ..., T]", and each selected snippet's mask column is thresholded: M1 *snippets*, so at most M1
columns are decoded, each once. A snippet's score is its best action class's probability, max over c < K of
P[c, t] (background excluded), and that class labels its candidates, scored by that probability times the mask
score ("the classification score from P"). This is the default (``top_selection="snippets"``) and what the authors'
release does (``tags_inference.py``: ``torch.max`` over the action rows of P per snippet, then the top
``top_k_snip`` snippets by that maximum). ``top_selection="pairs"`` ranks the K x T (class, snippet) pairs of P
instead, tadlab's earlier reading: a snippet may then enter once per class (its runner-up class takes a slot), and
the M1 slots can cover fewer than M1 snippets.

Soft-NMS: GSMT Sec. 4 sets "the SoftNMS threshold" to 0.4 for THUMOS and 0.6 for ActivityNet, citing Soft-NMS
(Bodla et al. 2017), and gives no formula. Bodla et al. define two decays: linear, ``s * (1 - tIoU)`` once tIoU
passes a threshold N_t, and gaussian, ``s * exp(-tIoU^2 / sigma)`` with no threshold. We read the paper's numbers
as the gaussian sigma by default, because of where the word comes from: the authors' release reads its
``nms_thresh: 0.6`` (``config/anet.yaml``, the paper's ActivityNet value) into the parameter ``nms_threshold`` of a
``Soft_NMS`` taken from G-TAD's post-processing (same name, signature and loop), and in G-TAD's function that
parameter is the gaussian's sigma, ``exp(-tIoU^2 / nms_threshold)`` (G-TAD's ``--nms_thr``), compared with no tIoU.
So "threshold" names sigma in the code the paper's numbers come from. The release itself then changed the decay to
``exp(-10 tIoU^2) / nms_threshold`` (sigma 0.1, and a division by 0.6 that *raises* every score overlapping at
tIoU < 0.23), in which 0.6 is neither a sigma nor a threshold; we do not follow that. The other reading, Bodla's
linear decay with N_t = 0.4 / 0.6, is offered (``nms=soft_nms_options(preset, reading="linear")``), so the two
can be compared. :data:`PAPER_SOFT_NMS` holds the values, chosen with ``nms="thumos"`` / ``nms="anet"`` (the sigma
reading). The default without a preset stays gaussian sigma 0.5. The TAGS supplement gives no Soft-NMS value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tadlab.grouping import activation_runs, class_map_candidates
from tadlab.utils import check_choice

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # Theta = {0.1, ..., 0.9} (Sec. 4)
PAPER_SOFT_NMS = {"thumos": 0.4, "anet": 0.6}  # GSMT Sec. 4, "the SoftNMS threshold" (read as sigma by default)
PAPER_SOFT_NMS_SIGMA = PAPER_SOFT_NMS  # the name it had when sigma was the only reading
SOFT_NMS_READINGS = ("sigma", "linear")
DEFAULT_NMS = {"method": "gaussian", "sigma": 0.5}
SOURCES = ("masks", "class_map", "both")
MASK_SCORES = ("inner", "contrast", "mean")
TOP_SELECTIONS = ("snippets", "pairs")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def soft_nms_options(preset: str | None = None, reading: str = "sigma") -> dict:
    """Keyword arguments of :func:`tadlab.segments.batched_soft_nms` for GSMT's post-processing.

    ``preset``: ``"thumos"`` (0.4) or ``"anet"`` (0.6), GSMT Sec. 4's "SoftNMS threshold", or None for tadlab's
    default (gaussian, sigma 0.5). ``reading`` (see the module docstring): ``"sigma"`` (default) makes the value
    the gaussian's sigma, ``exp(-tIoU^2 / sigma)``; ``"linear"`` makes it the tIoU threshold N_t of Bodla et al.'s
    linear decay, ``s * (1 - tIoU)`` for tIoU above N_t.
    """
    check_choice("reading", reading, set(SOFT_NMS_READINGS))
    if preset is None:
        return dict(DEFAULT_NMS)
    check_choice("preset", preset, set(PAPER_SOFT_NMS))
    if reading == "linear":
        return {"method": "linear", "iou_threshold": PAPER_SOFT_NMS[preset]}
    return {"method": "gaussian", "sigma": PAPER_SOFT_NMS[preset]}


def decode_global_masks(probs: torch.Tensor, masks: torch.Tensor | None, *, source: str | None = None,
                        decoding: str = "long", top_snippets: int = 50, thresholds=DEFAULT_THRESHOLDS,
                        score_threshold: float = 0.1, top_k: int = 200, mask_score: str = "inner",
                        nms: dict | str | None = None, top_selection: str = "snippets") -> list[dict]:
    """GSMT inference (see the module docstring): class map ``probs`` P (B, K+1, T), background last, and masks M
    (B, T, T) (column t = the mask predicted at snippet t; None without a mask branch) -> one dict per video of
    ``segments`` (N, 2) snippet units, ``scores`` (N,), ``labels`` (N,) int64, best first.

    ``source``: ``"masks"``, ``"class_map"`` or ``"both"``; None picks ``"masks"`` when masks are given, else
    ``"class_map"``. ``decoding`` (``"long"``: first to last activation; ``"short"``: every run) applies to mask
    candidates. ``top_snippets`` (M1 = 50) and ``top_selection``: the M1 best snippets of P, each with its best
    action class (``"snippets"``, Sec. 3.3, the default), or the M1 best (class, snippet) pairs (``"pairs"``), whose
    columns are decoded (see the module docstring). ``thresholds``
    (Theta), ``mask_score`` (``"inner"``, ``"contrast"`` or ``"mean"``), ``score_threshold`` (theta_c = 0.1),
    ``top_k`` (M2 = 200). ``nms``: keyword arguments of :func:`tadlab.segments.batched_soft_nms`, or a preset
    name (``"thumos"``, ``"anet"``: the paper's sigma, :func:`soft_nms_options`); None: gaussian, sigma 0.5.
    Everything up to Soft-NMS is batched tensor work over videos, snippets and thresholds.
    """
    from tadlab.segments import batched_soft_nms

    if not isinstance(probs, torch.Tensor) or probs.dim() != 3 or probs.shape[1] < 2:
        raise ValueError(f"probs must be a tensor (B, K+1, T) with K >= 1, got "
                         f"{tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__}")
    batch_size, num_classes, num_snippets = probs.shape[0], probs.shape[1] - 1, probs.shape[2]
    if masks is not None and (not isinstance(masks, torch.Tensor)
                              or tuple(masks.shape) != (batch_size, num_snippets, num_snippets)):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a tensor (B, T, T) = {(batch_size, num_snippets, num_snippets)} to match "
                         f"probs, got {shape}")
    source = ("masks" if masks is not None else "class_map") if source is None else source
    check_choice("source", source, set(SOURCES))
    if source != "class_map" and masks is None:
        raise ValueError(f"source={source!r} needs masks (B, T, T); without a mask branch use source='class_map'")
    check_choice("decoding", decoding, {"long", "short"})
    check_choice("mask_score", mask_score, set(MASK_SCORES))
    check_choice("top_selection", top_selection, set(TOP_SELECTIONS))
    _positive_int("top_snippets", top_snippets)
    _positive_int("top_k", top_k)
    thresholds = torch.as_tensor(thresholds, dtype=probs.dtype, device=probs.device).reshape(-1)
    if thresholds.numel() == 0 or bool(((thresholds <= 0) | (thresholds >= 1)).any()):
        raise ValueError(f"thresholds must be a non-empty list of values in (0, 1), got {thresholds.tolist()}")
    nms = soft_nms_options(nms) if nms is None or isinstance(nms, str) else dict(nms)

    # 1.-2. candidates (video, label, start, end) and their scores, from each source.
    parts = []
    if source in ("masks", "both"):
        video, label, start, end, snippet, class_score = mask_candidates(probs, masks, decoding, top_snippets,
                                                                         thresholds, top_selection)
        mask_confidence = column_scores(masks, video, start, end, mask_score, column=snippet)  # one voter: (R,)
        parts.append((video, label, start, end, class_score * mask_confidence))
    if source in ("class_map", "both"):
        # Alone, the class map is decoded exactly as the class-map grouping baseline does (contrast score); pooled
        # with mask candidates, its class confidence is the mean of P[c] over the voters, as defined above.
        video, label, start, end, score = class_map_candidates(
            probs, thresholds, score="mean" if source == "both" else "contrast")
        if source == "both":  # the voters are the snippets inside: mean of their columns' mask scores
            inside = _inside(start, end, num_snippets)
            per_column = column_scores(masks, video, start, end, mask_score)
            score = score * (per_column * inside).sum(1) / (end - start).to(score.dtype)
        parts.append((video, label, start, end, score))
    video, label, start, end, score = (torch.cat(columns) for columns in zip(*parts))

    # 3. merge duplicates, filter, top M2, Soft-NMS per video.
    span = num_snippets + 1
    key = ((video * num_classes + label) * span + start) * span + end
    unique, inverse = torch.unique(key, return_inverse=True)
    best = score.new_full(unique.shape, float("-inf")).scatter_reduce(0, inverse, score, reduce="amax")
    end_u, rest = unique % span, unique // span
    start_u, rest = rest % span, rest // span
    label_u, video_u = rest % num_classes, rest // num_classes
    keep = best > score_threshold
    best, video_u, label_u = best[keep], video_u[keep], label_u[keep]
    segments = torch.stack([start_u[keep], end_u[keep]], dim=1).to(probs.dtype)

    detections = []
    for b in range(batch_size):  # one Soft-NMS per video; everything per snippet was batched above
        own = (video_u == b).nonzero().squeeze(1)
        own = own[best[own].argsort(descending=True)[:top_k]]
        seg, kept_score, kept_label, _ = batched_soft_nms(segments[own], best[own], label_u[own], **nms)
        detections.append({"segments": seg, "scores": kept_score, "labels": kept_label.to(torch.int64)})
    return detections


def mask_candidates(probs: torch.Tensor, masks: torch.Tensor, decoding: str, top_snippets: int,
                    thresholds: torch.Tensor, top_selection: str = "snippets"):
    """The paper's candidates: columns of the top M1 snippets of P (or (class, snippet) pairs), thresholded at every
    theta.

    probs (B, K+1, T), masks (B, T, T), thresholds (H,) -> ``video, label, start, end, snippet`` (R,) int64 (the
    candidate [start, end) of class ``label`` read off column ``snippet``) and ``class_score`` (R,) = P[label,
    snippet]. ``top_selection="snippets"``: snippets ranked by their best action class's probability, labelled with
    that class; ``"pairs"``: (class, snippet) pairs ranked by P[class, snippet]. A column yields a candidate per
    threshold (``"long"``) or per run and threshold (``"short"``).
    """
    num_classes, num_snippets = probs.shape[1] - 1, probs.shape[2]
    action = probs[:, :num_classes, :]
    if top_selection == "snippets":  # Sec. 3.3: the top M1 snippets, each with its best action class
        best, best_class = action.max(dim=1)  # (B, T)
        class_scores, snippets = best.topk(min(top_snippets, num_snippets), dim=1)  # (B, M1)
        classes = best_class.gather(1, snippets)
    else:  # the top M1 (class, snippet) pairs: a snippet may enter once per class
        class_scores, flat = action.flatten(1).topk(min(top_snippets, num_classes * num_snippets), dim=1)  # (B, M1)
        classes, snippets = flat // num_snippets, flat % num_snippets
    columns = masks.transpose(1, 2).gather(1, snippets[..., None].expand(-1, -1, num_snippets))  # (B, M1, T)
    active = columns[:, :, None, :] >= thresholds[:, None]  # (B, M1, H, T)
    video, pick, start, end = _decode_activations(active, decoding)
    return video, classes[video, pick], start, end, snippets[video, pick], class_scores[video, pick]


def _decode_activations(active: torch.Tensor, decoding: str):
    """Boolean activations ``(B, M1, H, T)`` -> candidate ``video, pick, start, end`` (R,) int64, [start, end).

    ``"long"``: first and last activated snippet of each (column, threshold); ``"short"``: every activated run.
    """
    num_snippets = active.shape[-1]
    if decoding == "long":
        any_active = active.any(dim=-1)
        as_int = active.to(torch.uint8)
        first = as_int.argmax(dim=-1)  # argmax returns the first maximal index
        last = num_snippets - 1 - as_int.flip(-1).argmax(dim=-1)
        index = any_active.nonzero()
        b, i, h = index.unbind(1)
        return b, i, first[b, i, h], last[b, i, h] + 1
    rows, start, end = activation_runs(active)
    return rows[:, 0], rows[:, 1], start, end


def column_scores(masks: torch.Tensor, video: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                  mask_score: str = "inner", column: torch.Tensor | None = None) -> torch.Tensor:
    """Mask scores of columns of ``masks`` (B, T, T) on segments ``[start[r], end[r])`` of video ``video[r]`` (R,).

    ``column=None``: every column, ``(R, T)`` with entry [r, t] the score of ``masks[video[r], :, t]``; a ``column``
    (R,) int64: only column ``column[r]`` of each, ``(R,)``. ``mask_score``: see the module docstring. No (R, T, T)
    tensor is made: range maxima come from a sparse table (maxima over 2^j consecutive rows, j = 0 .. log2 T, two
    lookups per range), sums from cumulative sums along the rows.
    """
    check_choice("mask_score", mask_score, set(MASK_SCORES))
    num_snippets = masks.shape[-1]

    def rows(table: torch.Tensor, row: torch.Tensor, *level: torch.Tensor) -> torch.Tensor:
        """Row ``row[r]`` of video ``video[r]`` of ``table`` ([J,] B, rows, T) -> (R, T), or (R,) with ``column``."""
        return table[(*level, video, row) if column is None else (*level, video, row, column)]

    length = (end - start).to(torch.float64)
    length = length if column is not None else length[:, None]
    # (B, T+1, T): row s = sum of rows [0, s); float64 so that differences of large sums keep small ranges exact
    cumulative = F.pad(masks.to(torch.float64).cumsum(dim=1), (0, 0, 1, 0))
    inside_sum = rows(cumulative, end) - rows(cumulative, start)
    if mask_score == "mean":
        return (inside_sum / length).to(masks.dtype)
    levels, width = [masks], 1
    while 2 * width <= num_snippets:  # level j: max over rows [s, s + 2^j); rows past the end padded with -inf
        levels.append(torch.maximum(levels[-1], F.pad(levels[-1][:, width:], (0, 0, 0, width), value=float("-inf"))))
        width *= 2
    table = torch.stack(levels)  # (J, B, T, T)
    level = torch.log2((end - start).double()).floor().long()  # exact for integers below 2^52
    inner = torch.maximum(rows(table, start, level), rows(table, end - 2 ** level, level))
    if mask_score == "inner":
        return inner
    outside_mean = (rows(cumulative, torch.full_like(end, num_snippets)) - inside_sum) / (
        num_snippets - length).clamp_min(1)
    return (inner - outside_mean.to(masks.dtype)).clamp_min(0)


def _inside(start: torch.Tensor, end: torch.Tensor, num_snippets: int) -> torch.Tensor:
    """``(R, T)`` bool: snippet t lies in [start, end)."""
    position = torch.arange(num_snippets, device=start.device)
    return (position >= start[:, None]) & (position < end[:, None])
