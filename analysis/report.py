"""The launch report: the registered prediction against the final run, as report.md (with PNGs) and report.json.

It reads only what the launch left (prediction.json, the law file, the sweep table the law was fitted on,
the final run's summary and metrics) and draws: the sweep points with the fitted law and its
extrapolation to the final run, the parity plot with the final run added, the final run's loss curve
against the predicted loss and interval, and planned against actual GPU-hours with the measured MFU fed
back into the planner's formula.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from analysis.plots import LOSS_LABEL, readable_log_axes
from analysis.prediction import PREDICTION_NAME, read_prediction
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from scaling import formulas
from scaling.law import FittedLaw, file_sha256
from scaling.units import format_duration, format_interval, format_mfu

FINAL_COLOR = "crimson"


# ----------------------------------------------------------------------------- reading the launch


def read_launch(out: Path) -> dict:
    """Everything the report reads, as plain values: prediction, law, sweep table, final run summary, metrics."""
    out = Path(out)
    path = out / PREDICTION_NAME
    if not path.is_file():
        raise UserError(f"{out} holds no {PREDICTION_NAME}: not a launch directory")
    prediction = read_prediction(out)
    run = out / "runs" / prediction.run_id
    if not (run / "summary.json").is_file():
        raise UserError(f"the final run in {run} has not finished; re-run `scaling launch` to resume it")
    law_path = Path(prediction.law["path"])
    law = FittedLaw.load(law_path) if law_path.is_file() else None
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"out": out, "prediction": prediction, "summary": json.loads((run / "summary.json").read_text()),
            "metrics": metrics, "law": law,
            "law_unchanged": law is not None and file_sha256(law_path) == prediction.law["sha256"]}


def step_seconds(metrics: list[dict]) -> float:
    """Wall seconds spent in optimizer steps: each row's tokens over its tokens/s (evaluation not included)."""
    seconds, tokens = 0.0, 0
    for row in metrics:
        seconds += (row["tokens"] - tokens) / row["tokens_per_s"]
        tokens = row["tokens"]
    return seconds


# ----------------------------------------------------------------------------- the numbers


def _within(actual: float, interval) -> bool | None:
    return None if interval is None else bool(interval[0] <= actual <= interval[1])


def report_numbers(launch: dict) -> dict:
    """report.json: predicted against actual loss, planned against actual GPU-hours, and the measured MFU."""
    p, s = launch["prediction"], launch["summary"]
    plan = p.plan
    actual = s["final_val_loss"] if s["status"] == "completed" else None
    predicted, interval = p.predicted_loss, p.predicted_interval
    ok = actual is not None and math.isfinite(actual)
    world = s.get("world_size", 1)
    actual_hours = step_seconds(launch["metrics"]) * world / formulas.SECONDS_PER_HOUR
    measured_mfu = s.get("mfu")  # the trainer's: its FLOPs (PaLM: matmul params + attention) over the peak
    # Fed back in the planner's own convention (6ND, N as the law counts it): the same measured tokens/s,
    # counted as the planner counts FLOPs, is the MFU to assume when planning this kind of run again.
    planner_per_trainer_flops = plan["flops"] / p.run["tokens"] / s["flops_per_token"]
    fed_back_mfu = measured_mfu * planner_per_trainer_flops if measured_mfu else None
    return {
        "run_id": p.run_id,
        "status": s["status"],
        "params": p.run["law_params"],
        "param_convention": p.law["param_convention"],
        "tokens": s["tokens"],
        "predicted_loss": predicted,
        "predicted_interval": interval,
        "ci_level": p.ci_level,
        "actual_loss": actual,
        "actual_train_loss": s["final_train_loss"],
        "relative_error": (predicted - actual) / actual if ok else None,
        "within_interval": bool(interval[0] <= actual <= interval[1]) if ok and interval else None,
        # Older prediction files (registered before prediction intervals) have none: null.
        "prediction_interval": p.prediction_interval,
        "within_prediction_interval": _within(actual, p.prediction_interval) if ok else None,
        "extrapolation": p.details.get("extrapolation"),
        "prediction_warnings": p.details.get("warnings", []),
        **_training_numbers(p.training),
        "prediction_registered_utc": p.created_utc,
        "law_sha256": p.law["sha256"],
        "law_unchanged_since_prediction": launch["law_unchanged"],
        "planned_flops": plan["flops"],
        "trained_flops": s["flops"],
        "device": f"{plan['gpus']} x {plan['device']}",
        "peak_flops_per_s": plan["peak_flops_per_s"],
        "planned_mfu": plan["mfu"],
        # "measured here: ..." when the launch measured the run's shape (a CPU); else the assumption's source
        "planned_mfu_source": plan.get("mfu_source", "assumed"),
        "planned_gpu_hours": plan["gpu_hours"],
        "measured_mfu": measured_mfu,
        "planner_per_trainer_flops": planner_per_trainer_flops,
        "fed_back_mfu": fed_back_mfu,
        "replanned_gpu_hours": formulas.gpu_hours(plan["flops"], plan["peak_flops_per_s"], fed_back_mfu)
        if fed_back_mfu else None,
        "actual_gpu_hours": actual_hours,
        "effective_mfu": plan["flops"] / (plan["peak_flops_per_s"] * actual_hours * formulas.SECONDS_PER_HOUR)
        if actual_hours > 0 else None,
        "tokens_per_s": s["tokens_per_s"],
        "cost_usd_planned": plan["cost_usd"],
        "co2_kg_planned": plan["co2_kg"],
    }


def _training_numbers(training: dict | None) -> dict:
    """The final run's LR rule and whether it was trained like the law's runs (null: not known, a prediction
    registered before launches recorded it, or a law that records no training rules)."""
    from sweeps.grid import describe_difference
    from sweeps.hparams import describe_lr_rule

    if not training:
        return {"lr_rule": None, "trained_like_sweep": None, "training_differences": []}
    return {"lr_rule": describe_lr_rule(training["final_run"]["lr_rule"]),
            "trained_like_sweep": training["trained_like_sweep"],
            "training_differences": [describe_difference(d) for d in training["differences"]]
            + list(training.get("notes", []))}


# ----------------------------------------------------------------------------- the plots


def sweep_table(launch: dict):
    """The runs the law was fitted on, when its sweep table is still there."""
    from scaling.fit.data import load_runs

    source = launch["prediction"].law.get("sweep_table")
    if not source or not Path(source).is_file() or launch["law"] is None:
        return None
    return load_runs(source, launch["law"].param_convention)


def _final_point(ax, x: float, y: float, yerr: list[float] | None, label: str) -> None:
    err = None
    if yerr is not None:  # an unbounded side (a law file's null) gets no bar, and the label says so
        lo, hi = (v if v is not None and math.isfinite(v) else None for v in yerr)
        err = [[0.0 if lo is None else y - lo], [0.0 if hi is None else hi - y]]
        label += "".join(f"; {side} bound unbounded" for side, v in (("lower", lo), ("upper", hi)) if v is None)
    ax.errorbar([x], [y], yerr=err, fmt="*", ms=16, color=FINAL_COLOR, mec="k", mew=0.6, capsize=5,
                zorder=6, label=label)


def _prediction_bar(ax, x: float, nums: dict) -> None:
    """The prediction interval at x, a wide pale bar behind the final point's parameter interval (none when
    the law has no calibration or the interval is unbounded: the report's table says which)."""
    pi = nums.get("prediction_interval")
    if not pi or any(v is None or not math.isfinite(v) for v in pi):
        return
    ax.vlines([x], pi[0], pi[1], color=FINAL_COLOR, lw=9, alpha=0.25, zorder=4,
              label=f"{100 * nums['ci_level']:.0f}% prediction interval {format_interval(*pi, '.3f')}")


def plot_extrapolation(launch: dict, nums: dict, table, ax) -> None:
    """Sweep points, the law's iso-N curves and frontier (analysis.plots), extended to the final run."""
    from analysis.plots import plot_loss_vs_compute

    law = launch["law"]
    plot_loss_vs_compute(law, table, ax)
    c_final = nums["planned_flops"]  # 6ND, as the law's curves are drawn
    c = np.geomspace(table.flops.max(), c_final * 2, 100)
    n_opt, d_opt = law.law.compute_optimal(c)
    ax.plot(c, law.law.loss(n_opt, d_opt), color="k", lw=2, ls=":", label="frontier, extrapolated")
    n = nums["params"]
    c_n = np.geomspace(table.flops.min() / 2, c_final * 2, 200)
    ax.plot(c_n, law.law.loss(n, c_n / (6 * n)), color=FINAL_COLOR, lw=1.2, ls="--",
            label=f"law at the final run's N = {n:.3g}")
    _prediction_bar(ax, c_final, nums)
    _final_point(ax, c_final, nums["predicted_loss"], nums["predicted_interval"],
                 "final run: predicted (bar: parameter interval)")
    if nums["actual_loss"] is not None:
        ax.scatter([c_final], [nums["actual_loss"]], marker="o", s=70, facecolor="none", edgecolor="k", lw=1.5,
                   zorder=7, label="final run: actual")
    ax.set_xlim(table.flops.min() / 2, c_final * 2)
    readable_log_axes(ax)
    ax.set_title("Sweep, fitted law and its extrapolation to the final run")
    ax.legend(loc="upper right", fontsize=7)


def plot_parity_with_final(launch: dict, nums: dict, table, ax) -> None:
    """analysis.plots' parity plot of the sweep, with the final run's predicted (and interval) against actual."""
    from analysis.plots import plot_parity

    plot_parity(launch["law"], table, ax)
    if nums["actual_loss"] is not None:
        _prediction_bar(ax, nums["actual_loss"], nums)
        _final_point(ax, nums["actual_loss"], nums["predicted_loss"], nums["predicted_interval"],
                     f"final run (relative error {100 * nums['relative_error']:+.2f}%; bar: parameter interval)")
        lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.set(xlim=(lo, hi), ylim=(lo, hi))  # plot_parity's y = x line is unbounded: it spans these too
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Predicted against actual final loss")


def plot_loss_curve(launch: dict, nums: dict, ax) -> None:
    """The final run's train and validation loss against tokens, with the predicted loss and its interval."""
    rows = launch["metrics"]
    tokens = np.array([r["tokens"] for r in rows], float)
    ax.plot(tokens, [r["train_loss"] for r in rows], color="tab:blue", alpha=0.35, lw=1, label="train loss")
    evals = [r for r in rows if "val_loss" in r]
    # A final evaluation on more sequences (final_eval_batches) measures another sample of the validation
    # text: it is the star below, not a point of the periodic evaluations' line.
    kind = evals[0].get("val_sequences") if evals else None
    periodic = [(r["tokens"], r["val_loss"]) for r in evals if r.get("val_sequences") == kind]
    if periodic:
        ax.plot(*zip(*periodic, strict=True), "o-", color="tab:blue", ms=4, label="validation loss")
    ax.axhline(nums["predicted_loss"], color=FINAL_COLOR, lw=1.5, ls="--",
               label=f"predicted final loss {nums['predicted_loss']:.4f}")
    top = max(nums["predicted_loss"], nums["actual_loss"] or 0) + 1.5
    if nums["predicted_interval"]:
        lo, hi = nums["predicted_interval"]
        finite = [v if v is not None and math.isfinite(v) else None for v in (lo, hi)]
        # An unbounded side is drawn to the plot's edge (the label says it is unbounded), not to infinity.
        ax.axhspan(0.0 if finite[0] is None else finite[0], top if finite[1] is None else finite[1],
                   color=FINAL_COLOR, alpha=0.15,
                   label=f"{100 * nums['ci_level']:.0f}% bootstrap interval {format_interval(lo, hi, '.3f')}")
    if nums["actual_loss"] is not None:
        ax.scatter([tokens[-1]], [nums["actual_loss"]], marker="*", s=160, color="k", zorder=5,
                   label=f"actual final validation loss {nums['actual_loss']:.4f}")
    ax.set(xlabel="tokens trained", ylabel=LOSS_LABEL, ylim=(None, top),
           title=f"Final run {nums['run_id']}: loss curve against the prediction")
    ax.legend(fontsize=8)


def _mfu_word(nums: dict) -> str:
    """How the plan's MFU was had: measured on the run's shape before training, or assumed."""
    return "measured" if str(nums.get("planned_mfu_source", "")).startswith("measured") else "assumed"


def plot_gpu_hours(nums: dict, ax) -> None:
    """Planned GPU-hours (at the plan's MFU), re-planned with the run's measured MFU, and actual."""
    bars = [("planned", nums["planned_gpu_hours"], f"MFU {format_mfu(nums['planned_mfu'])} {_mfu_word(nums)}")]
    if nums["replanned_gpu_hours"]:
        bars.append(("re-planned", nums["replanned_gpu_hours"], f"MFU {format_mfu(nums['fed_back_mfu'])} fed back"))
    bars.append(("actual", nums["actual_gpu_hours"], "time in training steps"))
    names = [f"{a}\n({c})" for a, _, c in bars]
    sns.barplot(x=names, y=[b for _, b, _ in bars], hue=names, palette="crest", legend=False, ax=ax)
    for i, (_, hours, _) in enumerate(bars):
        ax.text(i, hours, format_duration(hours * 3600), ha="center", va="bottom")
    kind = "CPU" if "cpu" in nums["device"].lower() else "GPU"  # a CPU run's hours are not GPU-hours
    ax.set(ylabel=f"{kind}-hours (h)", title=f"Planned against actual {kind}-hours on {nums['device']}")


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def draw(launch: dict, nums: dict, plot_dir: Path) -> dict[str, Path]:
    """Every plot the data allow, as PNGs in plot_dir; returns them by name."""
    table = sweep_table(launch)
    plots = {"loss_curve": lambda ax: plot_loss_curve(launch, nums, ax),
             "gpu_hours": lambda ax: plot_gpu_hours(nums, ax)}
    if table is not None and len(table):
        plots = {"extrapolation": lambda ax: plot_extrapolation(launch, nums, table, ax),
                 "parity": lambda ax: plot_parity_with_final(launch, nums, table, ax), **plots}
    written = {}
    with sns.axes_style("whitegrid"):
        for name, fn in plots.items():
            fig = Figure(figsize=(7.5, 5))  # no pyplot: no global state, no display needed
            ax = fig.subplots()
            fn(ax)
            written[name] = plot_dir / f"{name}.png"
            _save(fig, written[name])
    return written


# ----------------------------------------------------------------------------- report.md


def _fmt(x, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def _mfu(x) -> str:
    """An MFU as the plan prints it (two significant digits): a CPU run's few thousandths are not 0.002."""
    return "n/a" if x is None else format_mfu(x)


def _interval(lo_hi) -> str:
    return "none (law without backtest calibration, or unbounded)" if lo_hi is None else (
        f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]")


def _yes(flag) -> str:
    return {True: "yes", False: "no", None: "n/a"}[flag]


def _multiples(where) -> str:
    if where is None:
        return "n/a"
    return f"{where['params_multiple']:.3g}x, {where['tokens_multiple']:.3g}x, {where['flops_multiple']:.3g}x"


def markdown(nums: dict, plots: dict[str, Path], out: Path) -> str:
    lo_hi = nums["predicted_interval"]
    interval = "none (law without bootstrap)" if lo_hi is None else format_interval(*lo_hi, ".4f")
    within = {True: "yes", False: "no", None: "n/a"}[nums["within_interval"]]
    rel = "n/a" if nums["relative_error"] is None else f"{100 * nums['relative_error']:+.2f}%"
    lines = [
        f"# Launch report: {nums['run_id']}",
        "",
        f"The final run's loss was predicted from the fitted law and registered on "
        f"{nums['prediction_registered_utc']} (`prediction.json`, law sha256 `{nums['law_sha256'][:12]}`"
        f"{'' if nums['law_unchanged_since_prediction'] else ', law file changed or missing since'}), "
        f"before training started. Run status: **{nums['status']}**.",
        "",
        "| | value |",
        "|---|---|",
        f"| model size N ({nums['param_convention']}) | {nums['params']:,} |",
        f"| tokens | {nums['tokens']:,} |",
        f"| predicted final loss | {nums['predicted_loss']:.4f} |",
        f"| {100 * nums['ci_level']:.0f}% bootstrap interval | {interval} |",
        f"| actual final validation loss | {_fmt(nums['actual_loss'])} |",
        f"| relative error (predicted - actual) / actual | {rel} |",
        f"| inside the interval | {within} |",
        f"| {100 * nums['ci_level']:.0f}% prediction interval (noise and extrapolation error, from the "
        f"fit's backtests) | {_interval(nums.get('prediction_interval'))} |",
        f"| inside the prediction interval | {_yes(nums.get('within_prediction_interval'))} |",
        f"| beyond the fitted runs (N, D, C multiples) | {_multiples(nums.get('extrapolation'))} |",
        f"| planned GPU-hours (MFU {format_mfu(nums['planned_mfu'])} {_mfu_word(nums)}) | "
        f"{nums['planned_gpu_hours']:.4g} |",
        f"| re-planned with the measured throughput (MFU {_mfu(nums['fed_back_mfu'])} as the planner "
        "counts) | "
        f"{_fmt(nums['replanned_gpu_hours'], '.4g')} |",
        f"| actual GPU-hours (time in training steps) | {nums['actual_gpu_hours']:.4g} |",
        f"| device | {nums['device']} |",
        f"| learning-rate rule of the final run | {nums.get('lr_rule') or 'n/a'} |",
        f"| trained like the law's runs (LR, batch and warmup rules, ctx, data, settings) | "
        f"{_yes(nums.get('trained_like_sweep'))} |",
        "",
    ]
    lines.extend([f"Trained otherwise than the law's runs: {d}" for d in nums.get("training_differences", [])]
                 + ([""] if nums.get("training_differences") else []))
    lines.extend([f"Warning (registered with the prediction): {w}" for w in nums.get("prediction_warnings", [])]
                 + ([""] if nums.get("prediction_warnings") else []))
    captions = {
        "extrapolation": "Sweep runs (coloured by N), the fitted law's iso-N curves and compute-optimal "
        "frontier, extrapolated to the final run (star: prediction with its interval; ring: actual).",
        "parity": "Predicted against actual final loss: the sweep runs the law was fitted on, and the "
        "held-out final run with its bootstrap interval.",
        "loss_curve": "The final run's loss against tokens, with the registered prediction and its interval.",
        "gpu_hours": "Planned GPU-hours under the planner's default MFU; re-planned with the throughput the "
        "trainer measured (steady state), fed back as the MFU the planner should assume; and the time actually "
        "spent in training steps (evaluation and start-up excluded). The trainer counts 6 x matmul parameters "
        "+ attention FLOPs per token; the planner counts 6N with N as the law counts it, so where N includes "
        "embeddings, which are looked up rather than multiplied (small models, total-parameter laws), the "
        f"planner counts {nums['planner_per_trainer_flops']:.2f}x the trainer's FLOPs and the fed-back MFU "
        f"({_mfu(nums['fed_back_mfu'])}) is the trainer's ({_mfu(nums['measured_mfu'])}) times "
        "that ratio. Re-planned falls short of actual by the time outside steady-state steps.",
    }
    for name, path in plots.items():
        lines += [f"## {name.replace('_', ' ').capitalize()}", "", captions[name], "",
                  f"![{name}]({path.relative_to(out).as_posix()})", ""]
    return "\n".join(lines)


def write_report(out: str | Path) -> dict:
    """Write OUT/report.json, OUT/report.md and OUT/plots/*.png for a finished launch; returns report.json."""
    out = Path(out)
    launch = read_launch(out)
    nums = report_numbers(launch)
    plots = draw(launch, nums, out / "plots")
    atomic_write_json(out / "report.json", nums)
    atomic_write_text(out / "report.md", markdown(nums, plots, out))
    return nums
