"""Chart data of a matplotlib figure, in the shape E2B's code interpreter returns as `chart`.

Line, scatter and bar axes are described with their data (title, axis labels and units, ticks,
scales, and the points or bars of each series), pies with their wedges; a figure of several axes
is a `superchart` of them; anything else (box plots, images, 3-D) is `unknown` with no elements. Bounded: at most
MAX_POINTS points per series, MAX_ELEMENTS series or bars per axes, MAX_AXES axes, and the JSON
at most MAX_CHART_BYTES, or no chart at all. Imported by the Python kernel only when a cell asks
for charts; it never raises (a figure it cannot read has no chart).
"""

import json
import math
import re

MAX_POINTS = 10000
MAX_ELEMENTS = 200
MAX_AXES = 16
MAX_CHART_BYTES = 512 * 1024

_UNIT = re.compile(r"^(.*?)\s*[(\[]([^()\[\]]{1,32})[)\]]\s*$")


def describe(fig):
    """The chart of `fig` as JSON text, or None."""
    try:
        axes = [ax for ax in fig.get_axes() if ax.get_visible()][:MAX_AXES]
        if not axes:
            return None
        charts = [_axes_chart(ax) for ax in axes]
        if len(charts) == 1:
            chart = charts[0]
        else:
            title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
            chart = {"type": "superchart", "title": title, "elements": charts}
        text = json.dumps(chart, allow_nan=False, default=str)
    except Exception:
        return None
    return text if len(text) <= MAX_CHART_BYTES else None


def _unit(label):
    m = _UNIT.match(label or "")
    return m.group(2).strip() if m else None


def _scale(ax, axis):
    from matplotlib import dates

    a = ax.xaxis if axis == "x" else ax.yaxis
    if isinstance(a.get_major_formatter(), (dates.DateFormatter, dates.AutoDateFormatter, dates.ConciseDateFormatter)):
        return "datetime"
    if a.units is not None and hasattr(a.units, "_mapping"):  # a StrCategoryConverter's unit data
        return "categorical"
    return ax.get_xscale() if axis == "x" else ax.get_yscale()


def _value(v, scale):
    """A coordinate as E2B gives it: a datetime as ISO text, a number as a number (NaN and infinity as text)."""
    if scale == "datetime":
        from matplotlib import dates

        try:
            return dates.num2date(float(v)).isoformat()
        except (ValueError, OverflowError):
            return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else str(f)


def _ticks(ax, axis, scale):
    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks, labels = [], []
    for t, label in zip(a.get_majorticklocs(), a.get_majorticklabels()):
        if lo - 1e-9 * abs(hi - lo) <= t <= hi + 1e-9 * abs(hi - lo):
            ticks.append(_value(t, scale))
            labels.append(label.get_text())
    return ticks[:MAX_ELEMENTS], labels[:MAX_ELEMENTS]


def _base(ax, kind):
    x_label, y_label = ax.get_xlabel(), ax.get_ylabel()
    return {"type": kind, "title": ax.get_title(), "x_label": x_label, "y_label": y_label,
            "x_unit": _unit(x_label), "y_unit": _unit(y_label)}


def _point_chart(ax, kind, series):
    chart = _base(ax, kind)
    x_scale, y_scale = _scale(ax, "x"), _scale(ax, "y")
    chart["x_ticks"], chart["x_tick_labels"] = _ticks(ax, "x", x_scale)
    chart["y_ticks"], chart["y_tick_labels"] = _ticks(ax, "y", y_scale)
    chart["x_scale"], chart["y_scale"] = x_scale, y_scale
    chart["elements"] = [
        {"label": label, "points": [[_value(x, x_scale), _value(y, y_scale)] for x, y in points[:MAX_POINTS]]}
        for label, points in series[:MAX_ELEMENTS]
    ]
    return chart


def _label(artist, i):
    label = artist.get_label() or ""
    return label if label and not label.startswith("_") else "Line %d" % (i + 1)


def _axes_chart(ax):
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    lines = [ln for ln in ax.get_lines() if ln.get_visible()]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    if bars and not lines and not dots:
        return _bar_chart(ax, bars)
    if lines and not bars and not dots:
        series = [(_label(ln, i), list(zip(ln.get_xdata(orig=True), ln.get_ydata(orig=True)))) for i, ln in enumerate(lines)]
        return _point_chart(ax, "line", series)
    if dots and not bars and not lines:
        series = [(_label(c, i), [tuple(p) for p in c.get_offsets()]) for i, c in enumerate(dots)]
        return _point_chart(ax, "scatter", series)
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges and not bars and not lines and not dots:
        elements = [{"label": w.get_label() or "", "angle": _value(w.theta2 - w.theta1, "linear"), "radius": _value(w.r, "linear")}
                    for w in wedges[:MAX_ELEMENTS]]
        return {"type": "pie", "title": ax.get_title(), "elements": elements}
    chart = {"type": "unknown", "title": ax.get_title(), "elements": []}
    return chart


def _bar_chart(ax, containers):
    chart = _base(ax, "bar")
    vertical = all(getattr(c, "orientation", "vertical") != "horizontal" for c in containers)
    axis = ax.xaxis if vertical else ax.yaxis
    names = {}
    for t, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels()):
        names[round(float(t), 6)] = label.get_text()
    elements = []
    for i, container in enumerate(containers):
        group = container.get_label() or ""
        group = group if group and not group.startswith("_") else "Group %d" % (i + 1)
        for patch in container.patches:
            if len(elements) >= MAX_ELEMENTS * 50:
                break
            if vertical:
                at, value = patch.get_x() + patch.get_width() / 2, patch.get_height()
            else:
                at, value = patch.get_y() + patch.get_height() / 2, patch.get_width()
            label = names.get(round(float(at), 6), str(_value(at, "linear")))
            elements.append({"label": label, "group": group, "value": _value(value, "linear")})
    chart["elements"] = elements
    return chart
