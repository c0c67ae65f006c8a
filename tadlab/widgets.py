"""Slider explorers for the notebooks: a matplotlib figure that redraws in place when a slider moves.

An explorer is a row of ipywidgets controls, a one-line readout and an ``ipywidgets.Image`` holding the figure as
PNG bytes. A change of a control draws the figure again and replaces the image's bytes in one message, so the
browser keeps the previous picture on screen until the next one is there (clearing an ``Output`` widget and
appending the new figure leaves the area blank while the figure is drawn, about a second for a large one).

Displayed (the last expression of a cell, or ``display(explorer)``), an explorer's output carries the live widget,
a PNG of its state at that moment and a short fixed text. A live kernel shows the widget. JupyterLab shows the PNG
for a notebook that is not trusted yet (a freshly opened copy), and static viewers show the PNG or the text: the
notebooks keep no widget state (``scripts/run_notebooks.py`` strips it), so without the PNG a static copy would
show a widget that cannot render. nbval compares only the fixed text (it skips PNGs and widget views).

Every slider's initial value must lie on its step grid (``min + n * step``): the browser snaps a value that does
not, and a range slider then moves the handle the user did not touch.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Callable

import ipywidgets as widgets
import matplotlib.figure
import matplotlib.pyplot as plt
import torch

PNG_DPI = 100  # the inline backend's resolution, so an explorer's figure matches the notebook's other figures


def snap(value: float, step: float, low: float = 0.0, high: float = math.inf) -> float:
    """The point of the grid ``low + n * step`` nearest to ``value``, kept within ``[low, high]``."""
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not step > 0:
        raise ValueError(f"step must be a positive number, got {step!r}")
    if not high >= low:
        raise ValueError(f"high must be >= low, got low={low!r}, high={high!r}")
    n = max(round((float(value) - low) / step), 0)
    if math.isfinite(high):
        n = min(n, math.floor((high - low) / step + 1e-9))
    return round(low + n * step, 10)  # 0.1 * 33 is 3.3000000000000003: keep the readout's number


def on_grid(value: float, step: float, low: float = 0.0) -> bool:
    """Whether ``value`` lies on the grid ``low + n * step`` (to float rounding)."""
    return math.isclose(snap(value, step, low), float(value), rel_tol=0.0, abs_tol=1e-9 * max(1.0, abs(step)))


def check_on_grid(name: str, slider: widgets.Widget) -> None:
    """Raise ``ValueError`` when a slider's value (or either end of a range slider's) is off its step grid."""
    step = getattr(slider, "step", None)
    if step is None or not hasattr(slider, "min"):
        return  # not a slider, or a slider that takes any value
    values = slider.value if isinstance(slider.value, (tuple, list)) else (slider.value,)
    off = [v for v in values if not on_grid(v, step, slider.min)]
    if off:
        raise ValueError(f"{name}: value {slider.value!r} must lie on the slider's grid min + n * step "
                         f"(min={slider.min!r}, step={step!r}); {off} do not (use tadlab.widgets.snap)")


def figure_png(fig: matplotlib.figure.Figure, dpi: int = PNG_DPI) -> bytes:
    """Render ``fig`` as PNG bytes (tight bounding box, as the inline backend does) and close it."""
    if not isinstance(fig, matplotlib.figure.Figure):
        raise TypeError(f"the draw function must return a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


class FigureExplorer:
    """``draw(**values) -> Figure`` redrawn whenever one of the keyword ``controls`` changes value.

    ``describe(**values) -> str`` fills the readout line under the controls; ``text`` is what a viewer that can
    show neither the widget nor the PNG prints. ``values()`` returns the controls' values by name.
    """

    def __init__(self, draw: Callable[..., matplotlib.figure.Figure], *, text: str,
                 describe: Callable[..., str] | None = None, **controls: widgets.Widget):
        if not callable(draw):
            raise TypeError(f"draw must be callable, got {type(draw).__name__}")
        if not controls:
            raise ValueError("give at least one control, e.g. k=ipywidgets.IntSlider(...)")
        for name, control in controls.items():
            if not isinstance(control, widgets.ValueWidget):
                raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")
            check_on_grid(name, control)
        self.controls, self.text = controls, str(text)
        self._draw, self._describe = draw, describe
        self.readout = widgets.Label()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        rows = [widgets.HBox(list(controls.values()))] + ([self.readout] if describe is not None else [])
        self.widget = widgets.VBox([*rows, self.image])
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> None:
        """Draw the figure for the current values and swap it into the image in one step."""
        values = self.values()
        self.image.value = figure_png(self._draw(**values))
        if self._describe is not None:
            self.readout.value = self._describe(**values)

    def _changed(self, change) -> None:
        self.redraw()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_()
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        bundle["text/plain"] = self.text
        return bundle


def snap_segments(segments: torch.Tensor, step: float, num_snippets: int) -> torch.Tensor:
    """``segments (N, 2)`` with both ends moved to the nearest point of the grid ``n * step`` in ``[0, T]``;
    an end that would meet its start is moved one step away, so every segment keeps a positive length."""
    if not isinstance(segments, torch.Tensor) or segments.ndim != 2 or segments.shape[-1] != 2:
        raise ValueError(f"segments must be a tensor of shape (N, 2), got {getattr(segments, 'shape', segments)!r}")
    snapped = []
    for start, end in segments.tolist():
        start, end = snap(start, step, 0.0, num_snippets), snap(end, step, 0.0, num_snippets)
        if end <= start:
            start, end = (start, start + step) if start + step <= num_snippets else (end - step, end)
        snapped.append((round(start, 10), round(end, 10)))
    return torch.tensor(snapped, dtype=segments.dtype, device=segments.device).reshape(-1, 2)


class AnnotationExplorer(FigureExplorer):
    """Pick one annotated instance of a video and drag its ``[start, end)``; the figure redraws for every move.

    ``draw(segments (N, 2), labels (N,), title) -> Figure`` and ``describe(segments) -> str`` receive the edited
    annotations. The explorer starts from the annotations moved to the slider's grid (``step`` snippets, 0.1 by
    default: at most 0.05 from the annotation), kept in ``start_segments``; ``edited`` holds the current ones.
    A range shorter than one step is refused: the slider goes back to the instance's last valid range.
    """

    def __init__(self, segments: torch.Tensor, labels: torch.Tensor, class_names, num_snippets: int, *,
                 draw: Callable[..., matplotlib.figure.Figure], describe: Callable[[torch.Tensor], str] | None = None,
                 text: str, step: float = 0.1):
        if len(segments) == 0 or len(segments) != len(labels):
            raise ValueError(f"need one label per segment and at least one segment, got {len(segments)} segments "
                             f"and {len(labels)} labels")
        self.labels, self.step, self.num_snippets = labels, step, num_snippets
        self.start_segments = snap_segments(segments, step, num_snippets)
        self.edited = self.start_segments.clone()
        self._quiet = False
        picker = widgets.Dropdown(options=[(f"{i}: {class_names[c]}", i) for i, c in enumerate(labels.tolist())],
                                  value=0, description="instance")
        span = widgets.FloatRangeSlider(value=self.range_of(0), min=0.0, max=float(num_snippets),
                                        step=step, description="[s, e)", readout_format=".1f",
                                        continuous_update=False, layout=widgets.Layout(width="600px"))
        self._draw_segments = draw
        self._describe_segments = describe
        super().__init__(self._draw_edited, text=text, describe=None if describe is None else self._describe_edited,
                         instance=picker, span=span)

    @property
    def picker(self) -> widgets.Dropdown:
        return self.controls["instance"]

    @property
    def span(self) -> widgets.FloatRangeSlider:
        return self.controls["span"]

    def range_of(self, instance: int) -> tuple[float, float]:
        """The edited ``(start, end)`` of ``instance`` as grid values (the tensor may hold float32 roundings)."""
        return tuple(snap(v, self.step, 0.0, self.num_snippets) for v in self.edited[instance].tolist())

    def _draw_edited(self, instance, span):
        start, end = self.range_of(instance)
        return self._draw_segments(self.edited, self.labels, f"instance {instance} at [{start:.1f}, {end:.1f})")

    def _describe_edited(self, instance, span):
        return self._describe_segments(self.edited)

    def _set_span_quietly(self, value) -> None:
        self._quiet = True
        try:
            self.span.value = value
        finally:
            self._quiet = False

    def _changed(self, change) -> None:
        if self._quiet:
            return
        if change["owner"] is self.picker:  # show the picked instance's range, edit nothing
            self._set_span_quietly(self.range_of(change["new"]))
        else:
            start, end = (snap(v, self.step, self.span.min, self.span.max) for v in change["new"])
            if end - start < self.step * (1 - 1e-9):  # refuse an empty range: back to the last valid one
                self._set_span_quietly(self.range_of(self.picker.value))
                return
            self.edited[self.picker.value] = torch.tensor([start, end], dtype=self.edited.dtype,
                                                          device=self.edited.device)
        self.redraw()
