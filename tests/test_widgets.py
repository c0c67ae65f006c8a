"""tadlab.widgets without a browser: step grids, one redraw per change, the static PNG, the annotation explorer's
edits. (tests/test_lab_browser.py drives the same explorers in JupyterLab.)"""
import base64

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from tadlab.widgets import (
    AnnotationExplorer,
    FigureExplorer,
    check_on_grid,
    figure_png,
    on_grid,
    snap,
    snap_segments,
)

matplotlib.use("Agg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_figure(title=""):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.set_title(title)
    return fig


# ------------------------------------------------------------------------------------------------- step grid
def test_snap_goes_to_the_nearest_grid_point_within_the_bounds():
    assert snap(3.29, 0.1) == 3.3 and snap(3.24, 0.5) == 3.0 and snap(3.26, 0.5) == 3.5
    assert snap(7, 2, low=1) == 7 and snap(8.2, 2, low=1) == 9
    assert snap(-4, 0.5) == 0.0 and snap(130.0, 0.1, 0.0, 128.0) == 128.0
    assert repr(snap(3.3000000000000003, 0.1)) == "3.3"


def test_on_grid_and_bad_steps():
    assert on_grid(3.3, 0.1) and on_grid(7, 2, low=1) and not on_grid(3.29, 0.1) and not on_grid(8, 2, low=1)
    for step in (0, -0.5, None, True):
        with pytest.raises(ValueError, match="step"):
            snap(1.0, step)


def test_check_on_grid_names_the_slider_and_its_grid():
    check_on_grid("k", widgets.IntSlider(value=7, min=1, max=49, step=2))
    check_on_grid("span", widgets.FloatRangeSlider(value=(3.3, 17.1), min=0, max=128, step=0.1))
    check_on_grid("picker", widgets.Dropdown(options=[1, 2]))  # not a slider: nothing to check
    with pytest.raises(ValueError, match=r"span: value \(3\.29, 17\.1\).*step=0\.1"):
        check_on_grid("span", widgets.FloatRangeSlider(value=(3.29, 17.1), min=0, max=128, step=0.1))
    with pytest.raises(ValueError, match="k: value 8"):
        check_on_grid("k", widgets.IntSlider(value=8, min=1, max=49, step=2))


def test_snap_segments_keeps_every_segment_non_empty():
    segments = torch.tensor([[3.29, 17.06], [5.01, 5.02], [127.99, 128.0]])
    snapped = snap_segments(segments, 0.1, 128)
    assert torch.allclose(snapped, torch.tensor([[3.3, 17.1], [5.0, 5.1], [127.9, 128.0]]))
    assert snapped.dtype == segments.dtype and (snapped[:, 1] > snapped[:, 0]).all()
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        snap_segments(torch.zeros(3), 0.1, 128)


# ------------------------------------------------------------------------------------------- figure explorer
def test_figure_png_renders_and_closes_the_figure():
    fig = small_figure()
    png = figure_png(fig)
    assert png.startswith(PNG_SIGNATURE) and not plt.fignum_exists(fig.number)
    with pytest.raises(TypeError, match="matplotlib Figure"):
        figure_png("not a figure")


def test_figure_explorer_redraws_once_per_change_and_shows_a_static_png():
    calls = []

    def draw(k):
        calls.append(k)
        return small_figure(f"k = {k}")

    slider = widgets.IntSlider(value=7, min=1, max=49, step=2)
    explorer = FigureExplorer(draw, k=slider, describe=lambda k: f"band of k = {k}", text="band explorer")
    first = bytes(explorer.image.value)
    assert calls == [7] and first.startswith(PNG_SIGNATURE) and explorer.readout.value == "band of k = 7"
    slider.value = 9
    assert calls == [7, 9] and bytes(explorer.image.value) != first and explorer.readout.value == "band of k = 9"
    assert explorer.values() == {"k": 9}
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == "band explorer"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    assert base64.b64decode(bundle["image/png"]) == bytes(explorer.image.value)
    assert not plt.get_fignums(), "every drawn figure is closed"


def test_figure_explorer_refuses_bad_controls_and_off_grid_values():
    with pytest.raises(ValueError, match="on the slider's grid"):
        FigureExplorer(small_figure, k=widgets.IntSlider(value=8, min=1, max=49, step=2), text="")
    with pytest.raises(TypeError, match="value widget"):
        FigureExplorer(small_figure, k=widgets.Box(), text="")
    with pytest.raises(ValueError, match="at least one control"):
        FigureExplorer(small_figure, text="")
    with pytest.raises(TypeError, match="draw must be callable"):
        FigureExplorer(None, k=widgets.IntSlider(), text="")


# --------------------------------------------------------------------------------------- annotation explorer
@pytest.fixture
def annotation_explorer():
    drawn = []

    def draw(segments, labels, title):
        drawn.append((segments.clone(), title))
        return small_figure(title)

    segments = torch.tensor([[3.29, 17.06], [26.94, 41.9]])
    explorer = AnnotationExplorer(segments, torch.tensor([3, 1]), [f"c{i}" for i in range(5)], 128, draw=draw,
                                  describe=lambda segs: f"length {float((segs[:, 1] - segs[:, 0]).sum()):.1f}",
                                  text="annotation explorer")
    return explorer, drawn


def test_annotation_explorer_starts_on_the_slider_grid(annotation_explorer):
    explorer, drawn = annotation_explorer
    assert explorer.span.value == (3.3, 17.1) and explorer.span.step == 0.1
    assert torch.allclose(explorer.start_segments, torch.tensor([[3.3, 17.1], [26.9, 41.9]]))
    assert [label for label, _ in explorer.picker.options] == ["0: c3", "1: c1"]
    assert len(drawn) == 1 and drawn[0][1] == "instance 0 at [3.3, 17.1)"
    assert explorer.readout.value == "length 28.8"


def test_moving_one_end_edits_only_that_end_of_the_picked_instance(annotation_explorer):
    explorer, drawn = annotation_explorer
    explorer.span.value = (3.3, 20.000000000000004)  # as a browser may send it
    assert torch.allclose(explorer.edited, torch.tensor([[3.3, 20.0], [26.9, 41.9]]))
    assert drawn[-1][1] == "instance 0 at [3.3, 20.0)" and explorer.readout.value == "length 31.7"


def test_picking_an_instance_shows_its_range_without_editing(annotation_explorer):
    explorer, drawn = annotation_explorer
    explorer.span.value = (4.0, 17.1)
    explorer.picker.value = 1
    assert explorer.span.value == (26.9, 41.9) and drawn[-1][1] == "instance 1 at [26.9, 41.9)"
    assert torch.allclose(explorer.edited[0], torch.tensor([4.0, 17.1])), "the first edit is kept"
    explorer.span.value = (26.9, 45.0)
    explorer.picker.value = 0
    assert explorer.span.value == (4.0, 17.1)
    assert torch.allclose(explorer.edited, torch.tensor([[4.0, 17.1], [26.9, 45.0]]))


def test_an_empty_range_is_refused(annotation_explorer):
    explorer, drawn = annotation_explorer
    count = len(drawn)
    explorer.span.value = (10.0, 10.0)
    assert explorer.span.value == (3.3, 17.1) and len(drawn) == count
    assert torch.equal(explorer.edited, explorer.start_segments)


def test_annotation_explorer_needs_one_label_per_segment():
    with pytest.raises(ValueError, match="one label per segment"):
        AnnotationExplorer(torch.tensor([[1.0, 2.0]]), torch.tensor([0, 1]), ["a", "b"], 10, draw=small_figure,
                           text="")
