"""The report's plots, each a matplotlib figure inlined as an SVG data: URI.

A bare `Figure` is drawn (never pyplot), so no global backend is chosen or
changed in the caller's process; text stays text in the SVG and ids are stable
from one report to the next.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from raywalk.report.html import data_uri, short
from raywalk.report.stats import GroupStats, Throughput

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Text stays text in the SVG (smaller, crisp); ids are stable from one report to the next.
_PLOT_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "raywalk",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _figure(height: float) -> Figure:
    # A bare Figure, not pyplot: no global backend is chosen or changed in the
    # caller's process; savefig(format="svg") draws with matplotlib's SVG backend.
    return Figure(figsize=(8, height), layout="constrained")


def _svg_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return data_uri("image/svg+xml", buf.getvalue())


def throughput_plot(series: Throughput) -> str:
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(3.2)
        ax = fig.add_subplot()
        edges = np.append(series.starts, series.starts[-1] + series.bin_seconds)
        minutes = series.clock == "written" and edges[-1] > 300
        x = edges / 60 if minutes else edges
        for i, (worker, rates) in enumerate(series.workers.items()):
            label = f"worker {short(worker)}" if i < 8 else None  # 8 names at most: a legend, not a wall
            ax.stairs(rates, x, baseline=None, linewidth=1, alpha=0.8, label=label)
        if len(series.workers) > 1:
            ax.stairs(series.total, x, baseline=None, color="black", linewidth=2, label="total")
        unit = "minutes" if minutes else "seconds"
        ax.set_xlabel(
            f"{unit} since the first chunk began"
            if series.clock == "written"
            else f"render {unit} of each worker (the index records no wall-clock times)"
        )
        ax.set_ylabel("frames per minute")
        ax.set_ylim(bottom=0)
        fig.legend(loc="outside upper right", fontsize=8, ncols=5, frameon=False)
        return _svg_uri(fig)


def seconds_plot(index: Mapping[str, Sequence[Any]], stats: list[GroupStats]) -> str:
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(0.8 + 0.35 * len(stats))
        ax = fig.add_subplot()
        by_worker: dict[str, list[float]] = {}
        for worker, s in zip(index["worker"], index["seconds"]):
            by_worker.setdefault(worker, []).append(s)
        ax.boxplot(
            [by_worker[s.name] for s in stats],
            orientation="horizontal",
            widths=0.6,
            tick_labels=[f"{short(s.name)} @ {', '.join(map(short, s.members))}" for s in stats],
        )
        ax.invert_yaxis()
        ax.set_xlabel("seconds per frame (box: quartiles, line: median)")
        ax.set_xlim(0, 1.1 * max(max(v) for v in by_worker.values()) or 1.0)
        return _svg_uri(fig)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frames as (first, last) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def walk_plot(table: pa.Table, columns: list[str], done: set[int], num_frames: int) -> str:
    data = table.select(["frame", *columns]).to_pydict()
    first: dict[int, int] = {}
    for i, frame in enumerate(data["frame"]):
        if frame in done:
            first.setdefault(frame, i)
    frames = sorted(first)
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(0.6 + 1.3 * len(columns))
        axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
        gaps = _runs([f for f in range(num_frames) if f not in first])
        cuts = np.flatnonzero(np.diff(frames) > 1) + 1  # a NaN there: no line across frames not done
        x = np.insert(np.asarray(frames, dtype=float), cuts, np.nan)
        for ax, column in zip(axes, columns):
            y = np.insert(np.array([data[column][first[f]] for f in frames], dtype=float), cuts, np.nan)
            ax.plot(x, y, ".-" if len(frames) <= 200 else "-", markersize=3, linewidth=1)
            ax.set_ylabel(column)
            for lo, hi in gaps:
                ax.axvspan(lo - 0.5, hi + 0.5, color="tab:red", alpha=0.15, linewidth=0)
        axes[-1].set_xlabel("frame" + (" (red: not done)" if gaps else ""))
        axes[-1].set_xlim(-0.5, num_frames - 0.5)
        return _svg_uri(fig)


def distances_plot(distances: np.ndarray) -> str:
    """Each finished frame's distance to the next (smoothness.parquet), the mean dashed."""
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(2.4)
        ax = fig.add_subplot()
        ax.plot(np.arange(len(distances)), distances, ".-" if len(distances) <= 200 else "-", linewidth=1)
        ax.axhline(float(distances.mean()), color="tab:gray", linewidth=0.8, linestyle="--")
        ax.set_xlabel("frame")
        ax.set_ylabel("distance to next")
        return _svg_uri(fig)


def timing_plot(table: np.ndarray) -> str:
    """The pacing curve: the walk parameter each frame renders at (timing.npy)."""
    with matplotlib.rc_context(_PLOT_RC):
        fig = _figure(2.4)
        ax = fig.add_subplot()
        ax.plot(np.arange(len(table)), table, "-", linewidth=1)
        ax.set_xlabel("frame")
        ax.set_ylabel("walk parameter u")
        return _svg_uri(fig)
