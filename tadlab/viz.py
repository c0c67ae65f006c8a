"""Plots the notebooks share: a video's features with its annotation timeline, segments as bars, every
label-assignment target of one video, query-based proposals stage by stage and where they read the pyramid,
figure saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

FIGURES = Path("..") / "figures"  # notebooks run with notebooks/ as their working directory


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_colors(num_classes: int) -> list:
    """One colour per class, stable across plots."""
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(num_classes)]


def plot_timeline(ax, segments, labels, num_classes: int, *, scores=None, row: float = 0.0,
                  height: float = 0.8, class_names=None, alpha: float = 0.9) -> None:
    """Draw segments ``(N, 2)`` (snippet units) as coloured bars on one row of ``ax``.

    With ``scores`` ``(N,)`` the bar's opacity follows the score, so weak detections look faint.
    """
    segments, labels = _numpy(segments).reshape(-1, 2), _numpy(labels).reshape(-1)
    colors = class_colors(num_classes)
    opacity = np.full(len(labels), alpha) if scores is None else np.clip(_numpy(scores), 0.05, 1.0)
    for (start, end), label, a in zip(segments, labels, opacity):
        ax.broken_barh([(start, end - start)], (row, height), color=colors[int(label)], alpha=float(a))
        if class_names is not None and scores is None:
            ax.text((start + end) / 2, row + height / 2, class_names[int(label)], ha="center", va="center",
                    fontsize=7, clip_on=True)


def plot_video(features, segments, labels, num_classes: int, *, class_names=None, title: str = "",
               evidence=None, detections=None, figsize=None):
    """Features ``(C, T)`` as a heat-map above the ground-truth timeline.

    ``evidence``: an optional ``(K, T)`` map (say, the features projected on each class's mean feature) drawn
    under the features, one row per class; ``detections``: an optional dict with ``segments (M, 2)``,
    ``scores (M,)``, ``labels (M,)`` in snippet units, drawn as a last row. Returns the figure.
    """
    features = _numpy(features)
    panels = [("features", 4)] + ([("evidence", 3)] if evidence is not None else []) + [("truth", 1)]
    panels += [("detected", 1)] if detections is not None else []
    height = sum(ratio for _, ratio in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=figsize or (10, 0.45 * height + 1.2), sharex=True,
                             gridspec_kw={"height_ratios": [ratio for _, ratio in panels]})
    axes = dict(zip([name for name, _ in panels], axes))
    num_snippets = features.shape[1]
    axes["features"].imshow(features, aspect="auto", cmap="viridis", interpolation="nearest",
                            extent=(0, num_snippets, features.shape[0], 0))
    axes["features"].set_ylabel("channel")
    axes["features"].set_title(title)
    if evidence is not None:
        evidence = _numpy(evidence)
        axes["evidence"].imshow(evidence, aspect="auto", cmap="magma", interpolation="nearest",
                                extent=(0, num_snippets, evidence.shape[0], 0))
        axes["evidence"].set_ylabel("class\nevidence")
        axes["evidence"].set_yticks(np.arange(evidence.shape[0]) + 0.5,
                                    class_names if class_names is not None else range(evidence.shape[0]),
                                    fontsize=6)
    plot_timeline(axes["truth"], segments, labels, num_classes, class_names=class_names)
    if detections is not None:
        plot_timeline(axes["detected"], detections["segments"], detections["labels"], num_classes,
                      scores=detections["scores"])
    for name in ("truth", "detected"):
        if name in axes:
            axes[name].set_yticks([])
            axes[name].set_ylabel(name, rotation=0, ha="right", va="center")
    axes = list(axes.values())
    axes[-1].set_xlim(0, num_snippets)
    axes[-1].set_xlabel("snippet")
    fig.tight_layout()
    return fig


def plot_label_targets(segments, labels, num_snippets: int, num_classes: int, *, max_duration: int, eta: int,
                       iou_threshold: float, queries=None, class_names=None, title: str = ""):
    """Every label-assignment target of one video (:mod:`tadlab.labels`), one panel per scheme: the ground truth
    ``segments (N, 2)`` (snippet units) / ``labels (N,)`` with the one-to-one matching of ``queries`` (a pair
    ``(logits (Q, K), segments (Q, 2))``, optional), snippet labels, boundary labels (SegTAD's first and last frame,
    BMN's width-3 regions), ActionFormer's positive pyramid points, SegTAD's positive sparse proposals (step
    ``eta``, tIoU > ``iou_threshold``), GSMT's T × T global masks and BMN's D × T map (``max_duration`` D).
    Returns the figure."""
    from tadlab.labels import (boundary_labels, boundary_matching_map, centre_sampling_assign, global_masks,
                               snippet_labels, sparse_proposal_targets)

    T, K = num_snippets, num_classes
    colors = np.array([c[:3] for c in class_colors(K)] + [(1.0, 1.0, 1.0)])  # background white
    cls = _numpy(snippet_labels(segments, labels, T, K))
    masks, _ = global_masks(segments, T, labels)
    starts, ends = (_numpy(x) for x in boundary_labels(segments, T, labels=labels))
    soft_starts, soft_ends = (_numpy(x) for x in boundary_labels(segments, T, width=3.0, labels=labels))
    fig = plt.figure(figsize=(13, 6.8))
    grid = fig.add_gridspec(5, 2, width_ratios=[1.7, 1], height_ratios=[1, 0.5, 1, 1.4, 1.4])
    ax = [fig.add_subplot(grid[i, 0]) for i in range(5)]
    for a in ax[1:]:
        a.sharex(ax[0])
    plot_timeline(ax[0], segments, labels, K, row=1.1, class_names=class_names)
    if queries is not None:
        _plot_matching(ax[0], *queries, segments, labels, T)
    ax[1].imshow(colors[cls][None], aspect="auto", extent=(0, T, 0, 1), interpolation="nearest")
    ax[1].set(yticks=[], title="snippet / frame labels (GSMT Fig. 3b, SegTAD Eq. 4)")
    t = np.arange(T) + 0.5
    ax[2].step(t, soft_starts, where="mid", color="tab:green", label="start, width 3 (BMN)")
    ax[2].step(t, -soft_ends, where="mid", color="tab:red", label="end, width 3 (BMN)")
    ax[2].plot(t[starts.astype(bool)], np.ones(int(starts.sum())), "g^", label="first frame (SegTAD)")
    ax[2].plot(t[ends.astype(bool)], -np.ones(int(ends.sum())), "rv", label="last frame (SegTAD)")
    ax[2].set(ylim=(-1.4, 2.9), yticks=[-1, 0, 1], yticklabels=["end", "", "start"], title="boundary labels")
    ax[2].legend(fontsize=7, ncol=4, loc="upper center", frameon=False)
    centre = centre_sampling_assign(segments, labels, T, K)
    positive = _numpy(centre["gt_index"]) >= 0
    points, levels = _numpy(centre["points"]), _numpy(centre["levels"])
    ax[3].scatter(points[~positive], levels[~positive], s=6, color="0.85")
    ax[3].scatter(points[positive], levels[positive], s=18, c=colors[_numpy(centre["labels"])[positive]])
    ax[3].set(ylabel="level", yticks=range(levels.max() + 1),
              yticklabels=[f"stride {2 ** i}" for i in range(levels.max() + 1)],
              title="ActionFormer centre sampling: positive points per level")
    sparse = sparse_proposal_targets(segments, T, eta, iou_threshold, labels=labels)
    proposals, keep = _numpy(sparse["proposals"]), _numpy(sparse["positive"])
    for y, (s, e) in enumerate(proposals[keep]):
        ax[4].plot([s, e], [y, y], color="tab:purple", lw=1.5)
    ax[4].set(ylabel="proposal", title=f"SegTAD sparse pattern (η = {eta}): the {int(keep.sum())} positives "
              f"of {len(proposals)} (tIoU > {iou_threshold})", xlim=(0, T), xlabel="snippet")
    am = fig.add_subplot(grid[0:3, 1])
    am.imshow(_numpy(masks), cmap="Greys", interpolation="nearest", extent=(0, T, T, 0))
    am.set(xlabel="snippet t (column = its mask target)", ylabel="snippet k", title="GSMT global masks (T × T)")
    ab = fig.add_subplot(grid[3:5, 1])
    image = ab.imshow(_numpy(boundary_matching_map(segments, T, max_duration, labels)), aspect="auto", cmap="magma",
                      vmin=0, vmax=1, interpolation="nearest", extent=(0, T, max_duration, 0))
    for s, e in _numpy(segments).reshape(-1, 2):  # the cell of each instance, when its ends fall on the grid
        ab.plot(s + 0.5, e - s - 0.5, "c+", ms=9)
    ab.set(xlabel="start snippet t", ylabel="d (lasts d + 1 snippets)", title="BMN boundary-matching map (D × T)")
    fig.colorbar(image, ax=ab, label="target tIoU")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plot_matching(ax, logits, queries, segments, labels, num_snippets: int) -> None:
    """The one-to-one matching of ``queries (Q, 2)`` under the ground truth row: matched queries black, linked to
    their instance; unmatched ones grey dotted (they learn "no action")."""
    from tadlab.labels import set_match

    rows, cols = set_match(logits, queries, segments, labels, num_snippets)
    queries, segments = _numpy(queries), _numpy(segments)
    for q, g in zip(rows.tolist(), cols.tolist()):
        (s, e), (gs, ge) = queries[q], segments[g]
        ax.plot([s, e], [0.45, 0.45], color="k", lw=2)
        ax.plot([(s + e) / 2, (gs + ge) / 2], [0.45, 1.1], color="0.5", lw=0.8)
    for q in sorted(set(range(len(queries))) - set(rows.tolist())):
        s, e = queries[q]
        ax.plot([s, e], [0.45, 0.45], color="0.7", lw=2, ls=":")
    ax.set(yticks=[0.45, 1.5], yticklabels=["queries", "truth"], ylim=(0, 2.1),
           title=f"ground truth; one-to-one matching of {len(queries)} queries (grey dotted: 'no action')")


def plot_positives_by_length(counts, bins=None):
    """Mean positives per instance against instance length (log-log), one line per scheme, from the
    :class:`tadlab.assignment_counts.SchemeCount` of every world. Returns the figure."""
    bins = np.geomspace(1.5, 100, 10) if bins is None else np.asarray(bins)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for scheme in dict.fromkeys(c.scheme for c in counts):
        chosen = [c for c in counts if c.scheme == scheme]
        lengths = np.concatenate([_numpy(c.lengths) for c in chosen])
        positives = np.concatenate([_numpy(c.positives) for c in chosen]).astype(float)
        which = np.digitize(lengths, bins)
        filled = [i for i in range(1, len(bins)) if (which == i).any()]
        x = [np.sqrt(bins[i - 1] * bins[i]) for i in filled]
        ax.plot(x, np.maximum([positives[which == i].mean() for i in filled], 0.1), "o-", label=scheme)
    ax.set(xscale="log", yscale="log", xlabel="instance length (snippets)", ylabel="mean positives per instance",
           title="Positives per action vs. its length (both presets)", xticks=[2, 4, 8, 16, 32, 64])
    ax.xaxis.set_major_formatter(plt.ScalarFormatter())
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_proposal_stages(ax, trace, segments, labels, num_classes: int, highlight=()) -> None:
    """Query-based proposals as they move: ``trace (S + 1, N, 2)`` (snippet units; the initial proposals, then each
    stage's output) one row per stage, each proposal a thin line at its own height, under the ground truth
    ``segments (G, 2)`` / ``labels (G,)``. The proposals listed in ``highlight`` are coloured (in that order) in
    every row, the others grey."""
    trace, highlight = _numpy(trace), [int(p) for p in highlight]
    rows, n = len(trace), trace.shape[1]
    plot_timeline(ax, segments, labels, num_classes, row=rows + 0.1)
    colours = plt.get_cmap("tab10")
    for stage, stage_segments in enumerate(trace):
        row = rows - 1 - stage
        for p, (start, end) in enumerate(stage_segments):
            rank = highlight.index(p) if p in highlight else None
            ax.plot([start, end], [row + 0.05 + 0.85 * p / n] * 2, lw=0.8 if rank is None else 2.2,
                    color="#bbbbbb" if rank is None else colours(rank))
    ax.set_yticks([rows - 1 - s + 0.5 for s in range(rows)] + [rows + 0.5],
                  ["initial"] + [f"stage {s}" for s in range(1, rows)] + ["ground truth"])
    ax.set_xlabel("snippet")


def plot_pyramid_read(levels, strides, segment, widened, chosen: int, points, values, num_snippets: int):
    """Where a segment-of-interest align reads: one panel per pyramid level ``levels[l] (d, T_l)`` (its channel mean
    as a step function over the snippets each cell covers, ``strides[l]`` snippets a cell), the ``segment`` and its
    ``widened`` span shaded, and on the ``chosen`` level (framed) the read ``values (T',)`` at snippet positions
    ``points (T',)``. Returns the figure."""
    fig, axes = plt.subplots(len(levels), 1, figsize=(10, 1.2 * len(levels) + 0.6), sharex=True, squeeze=False)
    for index, (ax, level, stride) in enumerate(zip(axes[:, 0], levels, strides)):
        signal = _numpy(level).mean(0)
        ax.stairs(signal, np.arange(len(signal) + 1) * stride, color="#34495e")
        for start, end in (segment, widened):
            ax.axvspan(float(start), float(end), color="#f5b041", alpha=0.3)
        ax.set_ylabel(f"P{index + 1}\nstride {stride}", fontsize=8)
        if index == chosen:
            ax.plot(_numpy(points), _numpy(values), "o", color="#c0392b", ms=4)
            for spine in ax.spines.values():
                spine.set_color("#c0392b"), spine.set_linewidth(2)
    axes[-1, 0].set_xlim(0, num_snippets), axes[-1, 0].set_xlabel("snippet")
    return fig


def plot_snippet_graph(ax, neighbours, centres, node_labels, background: int, num_snippets: int) -> None:
    """A snippet graph (SegTAD's PAG) as arcs over the time axis: ``neighbours (N, k)`` each node's neighbour
    indices, ``centres (N,)`` the input snippet at each node's centre, ``node_labels (N,)`` each node's class
    (``background`` for none). An arc is green when it joins two nodes of one label, grey otherwise; action nodes
    are purple, background nodes dark grey."""
    from matplotlib.patches import Arc

    for i, row in enumerate(_numpy(neighbours).tolist()):
        for j in row:
            width = abs(centres[j] - centres[i])
            ax.add_patch(Arc(((centres[i] + centres[j]) / 2, 0), width, width * 0.5, theta1=0 if j > i else 180,
                             theta2=180 if j > i else 360, alpha=0.6, lw=1,
                             color="tab:green" if node_labels[i] == node_labels[j] else "0.6"))
    ax.scatter(centres, np.zeros(len(centres)), c=["tab:purple" if c != background else "0.3" for c in node_labels],
               zorder=3)
    ax.set(xlim=(0, num_snippets), ylim=(-num_snippets / 8, num_snippets / 8), yticks=[], xlabel="snippet")


def save_figure(fig, name: str, enabled: bool, directory: Path | str = FIGURES) -> Path | None:
    """Write ``fig`` as ``directory/name`` (PNG) when ``enabled`` (a notebook's ``save_figures``); else do nothing."""
    if not enabled:
        return None
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
