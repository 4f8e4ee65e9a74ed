"""Plots of a fit (seaborn): loss against compute, isoFLOP parabolas, N_opt against C, residuals, parity.

Each `plot_*` draws onto a matplotlib Axes and reads only the run table and the FittedLaw; `plot_all` writes
every plot that applies to the form as PNG and SVG. Diverged or failed runs are drawn as x. Reference points
(`scaling fit --reference`: other models evaluated on the sweep's data, never fitted) are drawn as diamonds
on the plots with loss on the y axis, or as a dotted line across one whose x (compute) they do not know.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from gptcore.fileio import atomic_write_bytes
from scaling.fit.data import RunTable
from scaling.fit.estimators import budget_groups, isoflop_parabola
from scaling.law import FittedLaw

PALETTE = "viridis"
REFERENCE_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive")
EXTRAPOLATE = 100.0  # the frontier plot runs this far beyond the largest budget
LOSS_LABEL = "loss (nats/token)"


def readable_log_axes(ax) -> None:
    """Tick labels on every log axis of `ax`, the short ones included, for its current limits: matplotlib
    labels only powers of ten, so an axis within one decade (a learning-rate range, a loss axis) had none.
    Under a decade the ticks are evenly spaced (a log axis that short is nearly linear); up to three decades
    1-2-5 in each; wider, the powers of ten. Call it after the limits are final."""
    short = FuncFormatter(lambda v, _: f"{v:.3g}")
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or not (0 < lo < hi):
            continue
        decades = np.log10(hi / lo)
        if decades < 1:
            axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        elif decades <= 3:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        else:
            continue  # the default: a labelled power of ten each decade
        axis.set_major_formatter(short)
        axis.set_minor_formatter(NullFormatter())


def _size_norm(table: RunTable) -> LogNorm:
    return LogNorm(table.params.min(), max(table.params.max(), table.params.min() * 1.01))


def _points(table: RunTable) -> pd.DataFrame:
    return pd.DataFrame(
        {"flops": table.flops, "params": table.params, "tokens": table.tokens, "loss": table.loss}
    )


def _failed_points(table: RunTable) -> pd.DataFrame:
    """Left-out rows (failed, diverged...) with a size and token count; a missing loss is drawn at the top."""
    f = table.failed
    if f is None or len(f) == 0 or not {"params", "tokens"} <= set(f.columns):
        return pd.DataFrame(columns=["flops", "params", "loss"])
    col = "params" if table.param_convention == "total" else "non_embedding_params"
    n = pd.to_numeric(f.get(col, f["params"]), errors="coerce")
    d = pd.to_numeric(f["tokens"], errors="coerce")
    c = pd.to_numeric(f["flops"], errors="coerce") if "flops" in f.columns else 6 * n * d
    loss = (
        pd.to_numeric(f["loss"], errors="coerce") if "loss" in f.columns else pd.Series(np.nan, index=f.index)
    )
    top = float(table.loss.max()) * 1.05
    out = pd.DataFrame({"flops": c, "params": n, "loss": loss.where(np.isfinite(loss), top),
                        "why": [_why(f, i) for i in f.index]})
    return out[(out.flops > 0) & (out.params > 0)]


def _why(failed: pd.DataFrame, i) -> str:
    """A left-out row's reason as a legend reads it: its status, and its reason when short."""
    status = str(failed.at[i, "status"]).strip() if "status" in failed.columns else "left out"
    reason = failed.at[i, "reason"] if "reason" in failed.columns else None
    if isinstance(reason, str) and reason.strip():
        reason = reason.strip().splitlines()[0]
        return f"{status}: {reason if len(reason) <= 60 else reason[:57] + '...'}"
    return status


def _draw_failed(ax, table: RunTable, x: str, y: str = "loss") -> None:
    """The left-out rows as crosses, one legend entry per reason."""
    failed = _failed_points(table)
    if not len(failed) or x not in failed:
        return
    colors = ["crimson", "darkorange", "purple", "saddlebrown"]
    for i, (why, group) in enumerate(failed.groupby("why", sort=True)):
        ax.scatter(group[x], group[y], marker="x", color=colors[i % len(colors)], s=40,
                   label=f"left out: {why} ({len(group)})")


def _scatter(ax, table: RunTable, x: str, y: str = "loss") -> None:
    sns.scatterplot(
        data=_points(table),
        x=x,
        y=y,
        hue="params",
        hue_norm=_size_norm(table),
        palette=PALETTE,
        ax=ax,
        s=28,
        edgecolor="k",
        linewidth=0.3,
        legend=False,
        label="runs (colour: N)",
    )
    _draw_failed(ax, table, x, y)
    _colorbar(ax, table)


def _colorbar(ax, table: RunTable) -> None:
    sm = ScalarMappable(norm=_size_norm(table), cmap=PALETTE)
    ax.figure.colorbar(sm, ax=ax, label=f"N ({table.param_convention} params)")


def plot_loss_vs_compute(result: FittedLaw, table: RunTable, ax) -> None:
    """Loss against compute (log-log), points coloured by N, fitted iso-N curves and the optimal frontier."""
    _scatter(ax, table, "flops")
    c = np.geomspace(table.flops.min() / 2, table.flops.max() * 2, 200)
    if result.law is not None:
        cmap, norm = matplotlib.colormaps[PALETTE], _size_norm(table)
        drawn = False
        for n in _some(np.unique(table.params), 8):
            # D from C at this size's own FLOPs per token, as its points were counted: the trainer's count
            # exceeds 6N by the attention term, or falls below it for embedding-heavy shapes.
            m = table.params == n
            flops_per_token = float(np.median(table.flops[m] / table.tokens[m]))
            ax.plot(c, result.law.loss(n, c / flops_per_token), color=cmap(norm(n)), lw=1, alpha=0.8,
                    label="_nolegend_" if drawn else "the law at each N (colour)")
            drawn = True
        n_opt, d_opt = result.law.compute_optimal(c)
        ax.plot(c, result.law.loss(n_opt, d_opt), color="k", lw=2, ls="--", label="compute-optimal frontier (C = 6ND)")
    elif result.form == "kaplan":
        p = result.params
        ax.plot(
            c, p.get("E_C", 0) + (p["C_c"] / c) ** p["alpha_C"], color="k", lw=2, ls="--", label="L(C) fit"
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="compute C (FLOPs)",
        ylabel=LOSS_LABEL,
        title=f"Loss against compute ({result.form})",
    )
    readable_log_axes(ax)
    ax.legend(loc="upper right", fontsize=8)


def _some(values: np.ndarray, k: int) -> np.ndarray:
    """At most k values spread evenly over a sorted array (iso-N curves for every size would be a smear)."""
    return values if len(values) <= k else values[np.linspace(0, len(values) - 1, k).round().astype(int)]


def isoflop_budgets(result: FittedLaw, table: RunTable) -> list[dict]:
    """Per compute budget: its points, parabola in log N and minimum (the isoflop fit's, or fitted here)."""
    if result.form == "isoflop":
        budgets = {round(b["flops"], -10): b for b in result.details["budgets"]}
    else:
        budgets = {}
    labels = budget_groups(table.flops)
    out = []
    for g in np.unique(labels):
        m = labels == g
        c = float(np.exp(np.mean(np.log(table.flops[m]))))
        coef, why = isoflop_parabola(np.log(table.params[m]), table.loss[m])
        b = budgets.get(round(c, -10))
        out.append(
            {
                "flops": c,
                "mask": m,
                "coef": coef,
                "refused": why.value if why else None,
                "N_opt": b["N_opt"]
                if b
                else (float(np.exp(-coef[1] / (2 * coef[0]))) if why is None else None),
            }
        )
    return out


def plot_isoflop(result: FittedLaw, table: RunTable, ax) -> None:
    """Loss against N at each compute budget, with the fitted parabolas (in log N) and their minima."""
    budgets = isoflop_budgets(result, table)
    cmap = matplotlib.colormaps["magma"]
    norm = LogNorm(min(b["flops"] for b in budgets), max(b["flops"] for b in budgets) * 1.01)
    drawn = {"runs (colour: budget)": False, "fitted parabola": False, "refused parabola": False,
             "minimum": False}
    for b in budgets:
        color = cmap(0.85 * norm(b["flops"]))
        n, loss = table.params[b["mask"]], table.loss[b["mask"]]
        ax.scatter(n, loss, color=color, s=22, edgecolor="k", linewidth=0.3,
                   label=_first(drawn, "runs (colour: budget)"))
        if b["coef"] is not None and len(np.unique(n)) >= 3:
            x = np.linspace(np.log(n.min()), np.log(n.max()), 100)
            kind = "refused parabola" if b["refused"] else "fitted parabola"
            ax.plot(np.exp(x), np.polyval(b["coef"], x), color=color, lw=1.2, ls=":" if b["refused"] else "-",
                    label=_first(drawn, kind))
        if b["N_opt"] is not None and b["coef"] is not None:
            ax.scatter(
                [b["N_opt"]],
                [np.polyval(b["coef"], np.log(b["N_opt"]))],
                marker="*",
                s=120,
                color=color,
                edgecolor="k",
                zorder=5,
                label=_first(drawn, "minimum"),
            )
    _draw_failed(ax, table, "params")
    sm = ScalarMappable(norm=norm, cmap=cmap)
    ax.figure.colorbar(sm, ax=ax, label="compute budget (FLOPs)")
    ax.set(xscale="log", xlabel=f"N ({table.param_convention} params)", ylabel=LOSS_LABEL,
           title="IsoFLOP curves: loss against N at each compute budget")
    readable_log_axes(ax)
    ax.legend(fontsize=8)


def _first(drawn: dict, name: str) -> str:
    """`name` the first time an artist of that kind is drawn (one legend entry each), then matplotlib's
    no-legend label."""
    if drawn[name]:
        return "_nolegend_"
    drawn[name] = True
    return name


def plot_frontier(result: FittedLaw, table: RunTable, ax) -> None:
    """N_opt against C: the fitted line over the data, its extrapolation, and the bootstrap interval band."""
    c_lo, c_hi = table.flops.min(), table.flops.max()
    c_fit = np.geomspace(c_lo, c_hi, 100)
    c_ext = np.geomspace(c_hi, c_hi * EXTRAPOLATE, 100)
    c_all = np.concatenate([c_fit, c_ext])
    n_all = np.asarray(result.compute_optimal(c_all)[0])
    # A degenerate fit (an exponent of the wrong sign) has no frontier: a complex power, or no finite size.
    if np.iscomplexobj(n_all) or not (np.isfinite(n_all) & (n_all > 0)).all():
        ax.text(0.5, 0.5, "no compute-optimal frontier to draw:\nthe fitted exponents give no finite positive "
                "N_opt", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="compute C (FLOPs)", ylabel="N_opt (params)", xticks=[], yticks=[],
               title=f"Compute-optimal model size ({result.form})")
        return
    ax.plot(c_fit, result.compute_optimal(c_fit)[0], color="k", lw=2, label=f"fit: N_opt ∝ C^{result.a:.3f}")
    ax.plot(c_ext, result.compute_optimal(c_ext)[0], color="k", lw=2, ls="--", label="extrapolation")
    boot = result.bootstrap_frontiers(c_all)
    if boot is not None:
        lo, hi = (np.asarray(v, dtype=float) for v in result.interval(boot[0]))
        # An unbounded side draws nothing, and a band within 0.1% of the line is hidden under it: neither gets
        # a legend entry for a band that is not there.
        shown = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 1.001 * lo)
        if shown.any():
            whole = "" if shown.all() else " (where bounded)"
            ax.fill_between(c_all, lo, hi, where=shown, color="tab:blue", alpha=0.25,
                            label=f"{100 * result.ci_level:.0f}% bootstrap interval{whole}")
    if result.form == "isoflop":
        pts = [(b["flops"], b["N_opt"]) for b in result.details["budgets"]]
        ax.scatter(
            *zip(*pts, strict=True), color="tab:orange", edgecolor="k", zorder=5, label="isoFLOP minima"
        )
    elif result.form == "envelope":
        idx = result.details["envelope"]
        ax.scatter(
            table.flops[idx],
            table.params[idx],
            color="tab:orange",
            edgecolor="k",
            zorder=5,
            label="lower-envelope runs",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="N_opt (params)",
        title=f"Compute-optimal model size ({result.form})",
    )
    readable_log_axes(ax)
    ax.legend(fontsize=8)


def _scatter_by_size(df, x: str, y: str, table: RunTable, ax) -> None:
    """Points coloured by model size on the shared size scale, with its colour bar."""
    sns.scatterplot(data=df, x=x, y=y, hue="params", hue_norm=_size_norm(table), palette=PALETTE, ax=ax,
                    s=28, edgecolor="k", linewidth=0.3, legend=False, label="runs (colour: N)")
    _colorbar(ax, table)


def plot_residuals(result: FittedLaw, table: RunTable, ax) -> None:
    """Predicted minus actual loss against compute, coloured by N."""
    df = _points(table).assign(residual=result.law.loss(table.params, table.tokens) - table.loss)
    _scatter_by_size(df, "flops", "residual", table, ax)
    ax.axhline(0, color="k", lw=1, label="zero: the law meets the run")
    ax.set(
        xscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="predicted − actual loss (nats/token)",
        title=f"Residuals (RMSE {np.sqrt(np.mean(df.residual**2)):.4f})",
    )
    readable_log_axes(ax)
    ax.legend(fontsize=8)


def plot_parity(result: FittedLaw, table: RunTable, ax) -> None:
    """Predicted against actual loss; the diagonal is a perfect fit."""
    df = _points(table).assign(predicted=result.law.loss(table.params, table.tokens))
    _scatter_by_size(df, "loss", "predicted", table, ax)
    lo = min(df.loss.min(), df.predicted.min())
    ax.axline((lo, lo), slope=1, color="k", lw=1, ls="--", label="y = x: predicted equals actual")
    ax.set(xlabel="actual loss (nats/token)", ylabel="predicted loss (nats/token)", title="Parity")
    ax.legend(fontsize=8)


@dataclass(frozen=True)
class Reference:
    """A model outside the fit, evaluated on the sweep's data: drawn for comparison, never fitted."""

    name: str
    loss: float
    params: float  # in the table's parameter convention
    tokens: float | None = None  # trained tokens, when known (a scaling checkpoint); None for pretrained weights
    flops: float | None = None  # training compute, when the tokens are known

    def to_json(self) -> dict:
        return {"name": self.name, "loss": self.loss, "params": self.params, "tokens": self.tokens,
                "flops": self.flops}


# The plots that show loss against something a reference has: its x column (None: draw it as a level).
REFERENCE_AXES = {"loss_vs_compute": "flops", "isoflop": "params"}


def draw_references(ax, references: list[Reference], x: str) -> None:
    """Each reference at (its `x`, its loss) as a labelled diamond; a dotted level line when `x` is unknown."""
    for i, ref in enumerate(references):
        color = REFERENCE_COLORS[i % len(REFERENCE_COLORS)]
        at = getattr(ref, x)
        if at is None:
            ax.axhline(ref.loss, color=color, lw=1.2, ls=":", label=f"{ref.name} (reference; compute unknown)")
        else:
            ax.scatter([at], [ref.loss], marker="D", s=60, color=color, edgecolor="k", zorder=6,
                       label=f"{ref.name} (reference)")
    if references:
        ax.legend(fontsize=8)


def plots_for(result: FittedLaw) -> dict:
    """The plots that apply to a fit's form, by file stem."""
    plots = {"loss_vs_compute": plot_loss_vs_compute, "isoflop": plot_isoflop}
    if result.has_frontier:
        plots["frontier"] = plot_frontier
    if result.law is not None:
        plots.update(residuals=plot_residuals, parity=plot_parity)
    return plots


def plot_all(result: FittedLaw, table: RunTable, out_dir: str | Path,
             references: list[Reference] = ()) -> list[Path]:
    """Draw every plot that applies, with the reference points where they fit, and write each as PNG and SVG
    (atomically); returns the paths written."""
    out_dir = Path(out_dir)
    written = []
    with sns.axes_style("whitegrid"):
        for stem, draw in plots_for(result).items():
            fig = Figure(figsize=(7, 4.8))  # no pyplot: no global state, no display needed
            ax = fig.subplots()
            draw(result, table, ax)
            if stem in REFERENCE_AXES:
                draw_references(ax, list(references), REFERENCE_AXES[stem])
            fig.tight_layout()
            for ext in ("png", "svg"):
                buf = io.BytesIO()
                fig.savefig(buf, format=ext, dpi=120)
                path = out_dir / f"{stem}.{ext}"
                atomic_write_bytes(path, buf.getvalue())
                written.append(path)
    return written
