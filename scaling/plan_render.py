"""Draw a plan (the `Plan` from scaling.planner.plan) as the grouped table that `scaling plan` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaling.units import format_duration, format_interval, format_mfu, format_ratio, format_size

if TYPE_CHECKING:  # the planner imports nothing from here; the type is for readers
    from scaling.planner import Plan


def sci(x: float) -> str:
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.3e}".replace("e+", "e")


def duration(hours: float) -> str:
    return format_duration(hours * 3600)


def money(usd: float) -> str:
    if usd >= 1e6:
        return f"${usd / 1e6:,.3g}M"
    if usd >= 1e3:
        return f"${usd:,.0f}"
    return f"${usd:,.2f}"


def count(x: float) -> str:
    """4 significant figures, with thousands separators instead of an exponent up to 10^12."""
    return f"{x:,.0f}" if 1e4 <= x < 1e12 else f"{x:.4g}"


def ratio(x: float) -> str:
    return format_ratio(x)


def energy(kwh: float) -> str:
    return f"{count(kwh / 1e3)} MWh" if kwh >= 1e4 else f"{count(kwh)} kWh"


def mass(kg: float) -> str:
    return f"{count(kg / 1e3)} t" if kg >= 1e4 else f"{count(kg)} kg"


def loss_text(point: float | None, interval: list[float] | None) -> str:
    if point is None:
        return "n/a (the law predicts no loss)"
    return f"{point:.4f}" + (f"  {format_interval(*interval, '.4f')}" if interval else "")


def _rows(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    out = [title]
    for label, value, note in rows:
        out.append(f"  {label:<26}{value:<17} {note}".rstrip())
    return out


def render_plan(p: Plan) -> str:
    """The table: compute, time, money, energy and carbon, memory, the compute-optimal alternative."""
    shape = p.shape
    a = p.assumptions
    na = "n/a"
    lines = [
        f"{format_size(p.params)} parameters on {format_size(p.tokens)} tokens, "
        f"{p.gpus} x {p.gpu} ({p.precision}), law {p.law.name}",
        "",
    ]
    lines += _rows("Compute", [
        ("training FLOPs (6ND)", sci(p.flops), "Kaplan et al. 2020 §2.1"),
        ("with attention", sci(p.flops_with_attention), "+12·L·H·Q·T per token, PaLM appendix B"),
        ("tokens per parameter", ratio(p.tokens_per_param), "Chinchilla-optimal is about 20"),
    ])
    lines += _budget_rows(p)
    lines += _time_rows(p)
    price = p.price_usd_per_gpu_hour
    lines += _rows("Money", [
        ("price per GPU-hour", money(price) if price is not None else na, a.price),
        ("cost", money(p.cost_usd) if p.cost_usd is not None else na,
         f"{count(p.time.billed_gpu_hours)} billed GPU-hours (wall clock x {p.gpus} GPUs) * price"),
    ])
    lines += _rows("Energy and carbon", [
        ("power per GPU", f"{p.power_w:g} W" if p.power_w is not None else na, a.power),
        ("PUE", f"{p.pue:.2f}", a.pue),
        ("energy", energy(p.energy_kwh) if p.energy_kwh is not None else na,
         "billed GPU-hours * kW * PUE (Patterson et al. 2021)"),
        ("carbon intensity", f"{p.carbon_intensity_kg_per_kwh:.3f} kg/kWh", a.carbon_intensity),
        ("CO2e", mass(p.co2_kg) if p.co2_kg is not None else na, "energy * carbon intensity"),
    ])
    m = p.memory_gb_per_gpu
    tied = "tied" if shape.tie_weights else "untied"
    lines.append(
        f"Memory per GPU, GB ({p.precision}, AdamW, micro-batch {p.micro_batch} x ctx {shape.ctx}; "
        f"shape L={shape.n_layer} d={shape.d_model} H={shape.n_head} V={shape.vocab_size:,} {tied}, "
        f"{count(shape.params_total)} weights, {shape.how})")
    rows = [("no sharding", m.unsharded), *((f"ZeRO-{s}", m.zero[s]) for s in sorted(m.zero))]
    columns = (("weights", "weights", 10), ("grads", "gradients", 10), ("optimizer", "optimizer", 11),
               ("activations", "activations", 13), ("total", "total", 10))
    cells = [[f"{getattr(r, key):.2f}" for _, key, _ in columns] for _, r in rows]
    # The usual widths, wider where a value needs it, so that columns never run together.
    widths = [max(width, 2 + max(len(row[i]) for row in cells)) for i, (_, _, width) in enumerate(columns)]
    lines.append(f"  {'':<14}" + "".join(f"{head:>{w}}" for (head, _, _), w in zip(columns, widths, strict=True)))
    for (label, _), row in zip(rows, cells, strict=True):
        lines.append(f"  {label:<14}" + "".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    device_mem = f"{m.device_memory_gb:g} GB" if m.device_memory_gb is not None else "unknown"
    lines += [
        f"  ZeRO shards over the {p.gpus} GPUs (Rajbhandari et al. 2020); activations at the step's peak as the "
        f"trainer keeps them, {m.attention} attention, recomputation {m.recompute}",
        f"  (Korthikanti et al. 2022 §4; flash keeps no scores, Dao et al. 2022); "
        f"{m.activations_recomputed:.2f} GB with full recomputation",
        f"  device memory {device_mem}; fewest GPUs the run fits on: {p.min_gpus or na} "
        f"({p.min_gpus_how})",
    ]
    opt = p.compute_optimal
    yours = loss_text(p.predicted_loss, p.predicted_loss_interval)
    lines += _rows(f"Compute-optimal for the same {sci(p.flops)} FLOPs ({p.law.source})", [
        ("params", format_size(opt.params), f"you plan {format_size(p.params)} ({p.law.param_convention} count)"),
        ("tokens", format_size(opt.tokens), f"{ratio(opt.tokens_per_param)} tokens per parameter"),
        ("predicted loss", loss_text(opt.predicted_loss, opt.predicted_loss_interval), f"yours: {yours}"),
    ])
    lines += _inference_rows(p)
    if p.prediction is not None:
        from scaling.fit.predictive import prediction_lines

        q = p.prediction
        lines.append(f"Prediction for the planned run (law {p.law.name})")
        lines += prediction_lines(q.interval, q.level, q.reason, q.extrapolation, q.warnings)
    return "\n".join(lines)


def _budget_rows(p: Plan) -> list[str]:
    if p.budget is None:
        return []
    return _rows(f"Budget: {p.budget.given}", [
        ("GPU-hours it buys", count(p.budget.gpu_hours), f"on {p.gpu}, evaluation and checkpoints included"),
        ("training FLOPs", sci(p.budget.flops), f"spent as {p.mode} under law {p.law.name}"),
    ])


def _time_rows(p: Plan) -> list[str]:
    t, a = p.time, p.assumptions
    rows = [
        ("peak per GPU", f"{p.peak_flops_per_s / 1e12:,.1f} TFLOP/s", a.peak),
        ("MFU", format_mfu(p.mfu), a.mfu),
        ("GPU-hours", count(p.gpu_hours), "training: flops / (peak * MFU * 3600)"),
        ("training", duration(t.train_hours), f"{count(t.steps)} steps of {count(t.tokens_per_step)} tokens "
         f"on {p.gpus} GPUs"),
    ]
    if t.evaluations:
        rows += [("evaluation", duration(t.eval_hours), f"{count(t.evaluations)} evaluations, 2N FLOPs a token"),
                 ("checkpoints", duration(t.checkpoint_hours), f"{count(t.checkpoints)} x {t.checkpoint_gb:.3g} GB "
                  f"at {t.checkpoint_gb_per_s:g} GB/s")]
    else:
        rows.append(("evaluation, checkpoints", "not counted", t.schedule_source))
    rows += [("goodput", f"{t.goodput:.2f}" if t.goodput else "none", a.goodput),
             ("wall clock", duration(t.wall_clock_hours), "(training + evaluation + checkpoints) / goodput")]
    return _rows("Time", rows)


def _inference_rows(p: Plan) -> list[str]:
    inf = p.inference
    if inf is None:
        return []
    o, c, y = inf.optimal, inf.chinchilla, inf.planned

    def run_text(r) -> str:
        return f"{format_size(r.params)} on {format_size(r.tokens)}"

    return _rows(f"Training + serving {format_size(inf.inference_tokens)} tokens at loss {inf.target_loss:.4f} "
                 f"({inf.target_loss_source}; Sardana et al. 2023)", [
        ("least total compute", run_text(o), f"{sci(o.total_flops)} FLOPs ({sci(o.training_flops)} training, "
         f"{ratio(inf.optimal_tokens_per_param)} tokens per parameter)"),
        ("Chinchilla-optimal", run_text(c), f"{sci(c.total_flops)} FLOPs: the least saves "
         f"{100 * inf.saving_vs_chinchilla:.1f}%"),
        ("your run", run_text(y), f"{sci(y.total_flops)} FLOPs with serving"),
    ])
