"""Plots the notebooks share: a video's features with its annotation timeline, segments as bars, query-based
proposals stage by stage and where they read the pyramid, figure saving."""
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


def save_figure(fig, name: str, enabled: bool, directory: Path | str = FIGURES) -> Path | None:
    """Write ``fig`` as ``directory/name`` (PNG) when ``enabled`` (a notebook's ``save_figures``); else do nothing."""
    if not enabled:
        return None
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
