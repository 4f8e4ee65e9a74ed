"""Every plot, drawn for a small sweep's data, reads without the code: each axis has tick labels (a log axis
within one decade included) and a label with its unit, each legend entry is an artist that was drawn and
can be seen, left-out runs are labelled by their reason, and a CPU's hours are not called GPU-hours."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection
from matplotlib.container import Container
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import plots, report, tune_plots
from scaling.fit.data import runs_from_frame
from scaling.fit.fitting import fit_runs
from scaling.law import ChinchillaLaw, FittedLaw

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy must not be left to warn
TRUTH = ChinchillaLaw(E=1.8, A=400.0, B=410.0, alpha=0.34, beta=0.28)


def sweep_frame() -> pd.DataFrame:
    """4 sizes x 3 budgets around Chinchilla's law with noise, one run diverged and one left out by hand."""
    rng = np.random.default_rng(0)
    rows = []
    for n in (2e6, 4e6, 8e6, 16e6):
        for d in (2e7, 4e7, 8e7):
            rows.append({"run_id": f"n{n:.0e}-d{d:.0e}", "params": n, "tokens": d, "flops": 6 * n * d,
                         "loss": float(TRUTH.loss(n, d)) + rng.normal(0, 0.01), "status": "completed"})
    rows.append({"run_id": "big-lr", "params": 16e6, "tokens": 1.6e8, "flops": 6 * 16e6 * 1.6e8, "loss": math.nan,
                 "status": "diverged", "reason": "loss is nan at step 41"})
    rows.append({"run_id": "odd", "params": 2e6, "tokens": 1.6e8, "flops": 6 * 2e6 * 1.6e8, "loss": 3.1,
                 "status": "excluded", "reason": "one of the 1 highest losses"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    table = runs_from_frame(sweep_frame())
    return fit_runs(table, "chinchilla", bootstrap=40, seed=0), table


def drawn(draw) -> object:
    fig = Figure(figsize=(7, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw(ax)
    fig.canvas.draw()  # tick labels exist once drawn
    return ax


def tick_labels(axis, lo: float, hi: float, index: int) -> list[str]:
    lo, hi = min(lo, hi), max(lo, hi)
    return [t.get_text() for t in axis.get_ticklabels(which="both")
            if t.get_visible() and t.get_text() and lo <= t.get_position()[index] <= hi]


def visible(artist, ax) -> bool:
    """Whether an artist left something on the canvas: finite data, and for a band, some area. A legend proxy
    (seaborn's hue entries: a line without data) stands for a line of its colour that has data."""
    if isinstance(artist, Line2D):
        xy = np.asarray(artist.get_xydata(), dtype=float).reshape(-1, 2)
        if not len(xy):
            return any(line is not artist and line.get_color() == artist.get_color() and visible(line, ax)
                       for line in ax.lines)
        return artist.get_visible() and bool(np.isfinite(xy).all(axis=1).any())
    if isinstance(artist, Collection):
        paths = [p.vertices for p in artist.get_paths()]
        offsets = np.asarray(artist.get_offsets(), dtype=float).reshape(-1, 2)
        if offsets.size:  # a scatter
            return bool(np.isfinite(offsets).all(axis=1).any())
        return any(len(v) >= 3 and np.isfinite(v).all() and np.ptp(v[:, 1]) > 0 for v in paths)
    if isinstance(artist, Container):  # an error bar: its marker line and bars
        return any(visible(child, ax) for child in artist.get_children())
    return artist.get_visible()


def check_readable(ax) -> list[str]:
    """The axes' checks; returns the legend's texts."""
    for axis, lims, i in ((ax.xaxis, ax.get_xlim(), 0), (ax.yaxis, ax.get_ylim(), 1)):
        assert axis.get_label_text(), "an axis without a label"
        labels = tick_labels(axis, *lims, i)
        assert len(labels) >= 2, f"{axis.get_label_text()!r} ({axis.get_scale()}, {lims}) has tick labels {labels}"
    for unit_free in (ax.get_xlabel(), ax.get_ylabel()):
        if "loss" in unit_free:
            assert "nats/token" in unit_free, unit_free
    legend = ax.get_legend()
    if legend is None:
        return []
    handles, names = ax.get_legend_handles_labels()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == names, "the legend lists artists that are not on the axes"
    for handle, name in zip(handles, names, strict=True):
        assert visible(handle, ax), f"legend entry {name!r} is not drawn"
    return texts


def test_every_fit_plot_reads(fitted):
    law, table = fitted
    assert set(plots.plots_for(law)) == {"loss_vs_compute", "isoflop", "frontier", "residuals", "parity"}
    for name, draw in plots.plots_for(law).items():
        texts = check_readable(drawn(lambda ax, draw=draw: draw(law, table, ax)))
        if name in ("loss_vs_compute", "isoflop"):
            assert "left out: diverged: loss is nan at step 41 (1)" in texts, texts
            assert "left out: excluded: one of the 1 highest losses (1)" in texts, texts
        if name == "parity":
            assert "y = x: predicted equals actual" in texts and "runs (colour: N)" in texts


def test_an_unbounded_band_has_no_legend_entry(fitted):
    law, table = fitted
    unbounded = law.bootstrap.copy()
    unbounded[: len(unbounded) // 2, 1] = math.inf  # half the refits ran off: A infinite, so N_opt is too
    from dataclasses import replace

    texts = check_readable(drawn(lambda ax: plots.plot_frontier(replace(law, bootstrap=unbounded), table, ax)))
    assert not any("interval" in t for t in texts), texts
    assert any("interval" in t for t in check_readable(drawn(lambda ax: plots.plot_frontier(law, table, ax))))


def test_a_degenerate_frontier_is_said_not_drawn_on_log_axes(fitted):
    _, table = fitted
    law = FittedLaw.of(ChinchillaLaw(E=6.8, A=148.0, B=4.4e-5, alpha=1.0, beta=-0.9))  # a demo's degenerate fit
    ax = drawn(lambda ax: plots.plot_frontier(law, table, ax))
    assert "no compute-optimal frontier" in ax.texts[0].get_text()


def test_a_short_log_axis_gets_tick_labels():
    ax = drawn(lambda ax: (ax.plot([2e-3, 6e-3], [7.1, 7.3]), ax.set(xscale="log", yscale="log"),
                           plots.readable_log_axes(ax)))
    assert len(tick_labels(ax.xaxis, *ax.get_xlim(), 0)) >= 2 and len(tick_labels(ax.yaxis, *ax.get_ylim(), 1)) >= 2


def test_the_tune_plot_reads(tmp_path):
    rows = [{"study": "s", "run": f"L1-d{d}", "params": n * 100, "non_embedding_params": n, "trial": t, "lr": lr,
             "state": state, "loss": loss, "reason": ""}
            for d, n in ((32, 12672), (64, 49920))
            for t, (lr, state, loss) in enumerate([(2.4e-3, "COMPLETE", 8.09), (5.2e-3, "COMPLETE", 7.35 - n / 1e6),
                                                  (9.1e-3, "COMPLETE", 7.6), (4.0e-3, "PRUNED", 8.3)])]
    pd.DataFrame(rows).to_csv(tmp_path / "trials.csv", index=False)
    texts = check_readable(drawn(lambda ax: tune_plots.draw_loss_vs_lr(tmp_path / "trials.csv", ax)))
    assert {"N=12.7K", "N=49.9K", "each size's best"} <= set(texts)


def test_the_launch_report_plots_read(fitted):
    law, table = fitted
    nums = {"run_id": "final", "planned_flops": 6 * 24e6 * 1.2e8, "params": 24e6, "predicted_loss": 2.9,
            "predicted_interval": [2.85, math.inf], "ci_level": 0.95, "actual_loss": 2.93, "relative_error": -0.01,
            "planned_gpu_hours": 0.0175, "planned_mfu": 0.4, "replanned_gpu_hours": 0.0089, "fed_back_mfu": 0.79,
            "actual_gpu_hours": 0.0089, "device": "1 x cpu (measured peak)", "prediction_interval": [2.7, 3.1]}
    metrics = [{"tokens": 1000 * i, "train_loss": 9 - i / 20, **({"val_loss": 9 - i / 20} if i % 10 == 0 else {})}
               for i in range(1, 61)]
    launch = {"law": law, "metrics": metrics}
    for draw in (lambda ax: report.plot_extrapolation(launch, nums, table, ax),
                 lambda ax: report.plot_parity_with_final(launch, nums, table, ax),
                 lambda ax: report.plot_loss_curve(launch, nums, ax)):
        check_readable(drawn(draw))
    for draw in (lambda ax: report.plot_extrapolation(launch, nums, table, ax),
                 lambda ax: report.plot_parity_with_final(launch, nums, table, ax)):
        legend = [t.get_text() for t in drawn(draw).get_legend().get_texts()]
        assert "95% prediction interval [2.700, 3.100]" in legend, legend
    ax = drawn(lambda ax: report.plot_gpu_hours(nums, ax))
    assert ax.get_ylabel() == "CPU-hours (h)" and "GPU" not in ax.get_title()
