"""The shared plots draw what they are given: one line per proposal and stage, one panel per pyramid level."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tadlab.viz import plot_proposal_stages, plot_pyramid_read, plot_snippet_graph  # noqa: E402


def test_proposal_stages_draw_every_proposal_of_every_stage_and_colour_the_highlighted():
    trace = torch.tensor([[[0.0, 100.0], [50.0, 60.0], [10.0, 20.0]],
                          [[5.0, 90.0], [52.0, 58.0], [12.0, 18.0]]])  # (S + 1 = 2, N = 3, 2)
    fig, ax = plt.subplots()
    plot_proposal_stages(ax, trace, torch.tensor([[50.0, 60.0]]), torch.tensor([1]), num_classes=3, highlight=[1])
    lines = ax.get_lines()
    assert len(lines) == 6  # 2 rows x 3 proposals
    assert [tuple(line.get_xdata()) for line in lines[:3]] == [(0.0, 100.0), (50.0, 60.0), (10.0, 20.0)]
    widths = [line.get_linewidth() for line in lines]
    assert widths == [0.8, 2.2, 0.8, 0.8, 2.2, 0.8]  # proposal 1 is highlighted in both rows
    assert [t.get_text() for t in ax.get_yticklabels()] == ["initial", "stage 1", "ground truth"]
    plt.close(fig)


def test_pyramid_read_has_one_panel_per_level_and_marks_the_chosen_one():
    levels = [torch.arange(8.0).repeat(2, 1), torch.arange(4.0).repeat(2, 1)]  # (d = 2, T_l), strides 2 and 4
    points, values = np.array([3.0, 5.0]), np.array([1.0, 2.0])
    fig = plot_pyramid_read(levels, (2, 4), (2.0, 6.0), (1.2, 6.8), chosen=1, points=points, values=values,
                            num_snippets=16)
    assert len(fig.axes) == 2
    assert not fig.axes[0].get_lines()  # only the chosen level shows the read points
    [read] = fig.axes[1].get_lines()
    np.testing.assert_array_equal(read.get_xdata(), points)
    np.testing.assert_array_equal(read.get_ydata(), values)
    assert fig.axes[1].get_xlim() == pytest.approx((0, 16))
    plt.close(fig)


def test_label_targets_draw_every_scheme_and_the_matching():
    from tadlab.viz import plot_label_targets

    segments, labels = torch.tensor([[2.0, 10.0], [14.0, 20.0]]), torch.tensor([0, 1])
    queries = (torch.zeros(3, 2), torch.tensor([[1.0, 9.0], [15.0, 21.0], [0.0, 4.0]]))
    fig = plot_label_targets(segments, labels, 24, 2, max_duration=24, eta=2, iou_threshold=0.5, queries=queries,
                             title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert any("one-to-one matching of 3 queries" in t for t in titles)
    assert any("GSMT global masks" in t for t in titles) and any("boundary-matching map" in t for t in titles)
    dotted = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1  # two instances, three queries: one learns "no action"
    plt.close(fig)


def test_positives_by_length_draws_one_line_per_scheme():
    from tadlab.assignment_counts import SchemeCount
    from tadlab.viz import plot_positives_by_length

    lengths = torch.tensor([2.0, 4.0, 40.0])
    counts = [SchemeCount("anet", "a", 10, torch.tensor([2, 4, 40]), lengths, 1),
              SchemeCount("thumos", "a", 10, torch.tensor([1]), torch.tensor([8.0]), 1),
              SchemeCount("anet", "b", 10, torch.tensor([1, 1, 1]), lengths, 1)]
    fig = plot_positives_by_length(counts)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert len(lines[0].get_xdata()) == 4  # lengths 2, 4, 8 (thumos) and 40 fall in four bins
    plt.close(fig)


def test_snippet_graph_draws_one_arc_per_edge_green_within_a_label():
    from matplotlib.colors import to_rgba

    neighbours = torch.tensor([[1], [0], [1]])  # node 0 -> 1, 1 -> 0, 2 -> 1: three edges
    centres, labels = np.array([4, 12, 20]), [0, 0, 5]  # node 2 is background (label 5)
    fig, ax = plt.subplots()
    plot_snippet_graph(ax, neighbours, centres, labels, background=5, num_snippets=24)
    arcs = ax.patches
    assert len(arcs) == 3
    assert [a.get_edgecolor()[:3] for a in arcs] == [to_rgba("tab:green")[:3]] * 2 + [to_rgba("0.6")[:3]]
    assert [a.center[0] for a in arcs] == [8.0, 8.0, 16.0] and ax.get_xlim() == (0, 24)
    colours = ax.collections[0].get_facecolors()
    assert [tuple(c[:3]) for c in colours] == [to_rgba("tab:purple")[:3]] * 2 + [to_rgba("0.3")[:3]]
    plt.close(fig)
