"""Loss against learning rate per model size, from `scaling tune`'s trials.csv (reads, draws, nothing else)."""

from __future__ import annotations

import io
from pathlib import Path

from gptcore.fileio import atomic_write_bytes


def draw_loss_vs_lr(trials_csv: str | Path, ax) -> None:
    """One line per size over its completed trials (pruned ones as crosses at their last reported loss),
    with each size's best LR marked, to show whether the optimum moves with size."""
    import pandas as pd
    import seaborn as sns

    from analysis.plots import readable_log_axes
    from scaling.units import format_size

    df = pd.read_csv(trials_csv)
    df = df[df["loss"].notna() & df["lr"].notna()].copy()
    df["size"] = df["non_embedding_params"].map(lambda n: f"N={format_size(n)}")
    order = [f"N={format_size(n)}" for n in sorted(df["non_embedding_params"].unique())]
    done = df[df["state"] == "COMPLETE"].sort_values("lr")
    sns.lineplot(data=done, x="lr", y="loss", hue="size", hue_order=order, marker="o", ax=ax)
    pruned = df[df["state"] == "PRUNED"]
    if len(pruned):
        sns.scatterplot(data=pruned, x="lr", y="loss", hue="size", hue_order=order, marker="X", ax=ax, legend=False)
    for i, (_, best) in enumerate(done.loc[done.groupby("size")["loss"].idxmin()].iterrows()):
        ax.axvline(best["lr"], color="grey", lw=0.6, ls=":", label="each size's best" if i == 0 else "_nolegend_")
    ax.set_xscale("log")
    readable_log_axes(ax)  # a tune's LR range is often under a decade: matplotlib would label no tick
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Loss vs learning rate per size" + (" (x: pruned trials)" if len(pruned) else ""))
    ax.legend(fontsize=8)


def plot_loss_vs_lr(trials_csv: str | Path, out_png: str | Path) -> Path:
    """draw_loss_vs_lr as a PNG at out_png (atomically)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7, 4.5))  # no pyplot: no global state, no display needed
        draw_loss_vs_lr(trials_csv, fig.subplots())
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)
