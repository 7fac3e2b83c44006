"""Writing analysis outputs: each figure as PNG, its data as CSV beside it, and the command that made it.

For ``<name>``: ``<name>.png``, ``<name>.csv`` and ``<name>.cmd.txt`` (the command line and the date), each written
atomically. The command also appears in small type at the bottom of the figure.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments.runner.atomic import atomic_write, write_text_atomic  # noqa: E402

POINT_COLOURS = {"init": "#9ecae1", "trained": "#08519c"}


def command_line() -> str:
    return "python -m experiments.analysis " + shlex.join(sys.argv[1:])


def save(figure, frame: pd.DataFrame, out_dir: Path, name: str, command: str) -> Path:
    """Write ``name``.png/.csv/.cmd.txt into ``out_dir``; returns the PNG's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.text(0.01, 0.005, command, fontsize=6, color="0.45", ha="left", va="bottom")
    png = out_dir / f"{name}.png"
    atomic_write(png, lambda temporary: figure.savefig(temporary, dpi=130, bbox_inches="tight", format="png"))
    plt.close(figure)
    write_csv(frame, out_dir / f"{name}.csv")
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(out_dir / f"{name}.cmd.txt", f"{command}\n# written {stamp}\n")
    return png


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda temporary: frame.to_csv(temporary, index=False))


def distortion_figure(gains: pd.DataFrame, summary: pd.DataFrame, title: str):
    """Per method, init and trained side by side: box plots of ‖Jv‖/‖v‖ over random unit v, the range [σ_min, σ_max]
    of J as a thin bar beside them (σ_min = 0 drawn to the axis floor), and κ = σ_max/σ_min on top. Log scale: the
    methods' gains differ by orders of magnitude."""
    labels = list(dict.fromkeys(summary["label"]))
    figure, axis = plt.subplots(figsize=(max(6.0, 1.5 * len(labels) + 2), 4.4))
    floor = 0.3 * float(gains["gain"][gains["gain"] > 0].min())
    width = 0.34
    for offset, point in ((-width / 2, "init"), (width / 2, "trained")):
        for i, label in enumerate(labels):
            values = gains[(gains.label == label) & (gains.point == point)]["gain"].to_numpy()
            row = summary[(summary.label == label) & (summary.point == point)]
            if not values.size or row.empty:
                continue
            boxes = axis.boxplot(
                [values],
                positions=[i + offset],
                widths=width * 0.7,
                patch_artist=True,
                flierprops={"markersize": 2},
                medianprops={"color": "black"},
            )
            boxes["boxes"][0].set_facecolor(POINT_COLOURS[point])
            low, high = max(float(row.sigma_min.iloc[0]), floor), float(row.sigma_max.iloc[0])
            axis.plot([i + offset + width * 0.45] * 2, [low, high], color=POINT_COLOURS[point], lw=1.2)
        axis.plot([], [], "s", color=POINT_COLOURS[point], label=f"{point}: ‖Jv‖/‖v‖ (box), [σ_min, σ_max] (bar)")
    for i, label in enumerate(labels):
        rows = summary[(summary.label == label)]
        text = "\n".join(f"{row.point}: κ={_kappa(row.condition)}" for row in rows.itertuples())
        axis.annotate(text, (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7)
    axis.set_yscale("log")
    axis.set_ylim(bottom=floor)
    axis.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    axis.set_ylabel("gain of the map p ↦ ΔW")
    axis.axhline(1.0, color="0.6", lw=0.8, ls="--")
    axis.set_title(title, pad=28)
    axis.legend(loc="lower left", fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def _kappa(value: float) -> str:
    return "∞" if not np.isfinite(value) else f"{value:.3g}"


def landscape_figure(surfaces: dict[str, np.ndarray], alphas: np.ndarray, betas: np.ndarray, title: str):
    """Contour plots of the validation loss, one panel per method on the same (α, β) axes, each with its own colour
    scale: methods' losses can differ by orders of magnitude in range (a flat panel would hide its shape), so each
    colourbar states its own range — read the numbers, not the colours, across panels."""
    figure, axes = plt.subplots(
        1, len(surfaces), figsize=(5.2 * len(surfaces), 4.4), squeeze=False, sharex=True, sharey=True
    )
    for axis, (label, surface) in zip(axes[0], surfaces.items()):
        contours = axis.contourf(alphas, betas, surface, levels=20, cmap="viridis")
        axis.contour(alphas, betas, surface, levels=contours.levels, colors="white", linewidths=0.3)
        axis.plot(0, 0, "r*", markersize=9)
        axis.set_title(
            f"{label}\nloss min {np.nanmin(surface):.5g}, range {np.nanmax(surface) - np.nanmin(surface):.2g}",
            fontsize=9,
        )
        axis.set_xlabel("α (filter-normalised direction 1)")
        colourbar = figure.colorbar(contours, ax=axis)
        colourbar.formatter.set_useOffset(False)
        colourbar.update_ticks()
    axes[0][0].set_ylabel("β (filter-normalised direction 2)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def theta_figure(vectors: dict[str, np.ndarray], title: str):
    """Histograms of trained θ per run (density), with mean and std in the legend."""
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    edges = np.histogram_bin_edges(np.concatenate(list(vectors.values())), bins=80)
    for label, values in vectors.items():
        axis.hist(
            values,
            bins=edges,
            density=True,
            histtype="step",
            lw=1.3,
            label=f"{label} (n={values.size:,}, mean {values.mean():.2e}, std {values.std():.2e})",
        )
    axis.set_xlabel("θ value")
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure
