"""`scaling plan`: FLOPs, GPU-hours, wall clock, cost, energy, CO2 and memory for a run, and the
compute-optimal alternative. Parses flags and delegates to scaling.planner; imports torch only for
--gpu cpu, whose peak is measured as `scaling launch` measures it."""

from __future__ import annotations

import argparse

from gptcore.errors import UserError
from gptcore.fileio import dumps_json
from gptcore.hardware import PRECISIONS
from scaling.memory import ATTENTION_KERNELS, RECOMPUTE
from scaling.plan_render import render_plan
from scaling.planner import DEFAULT_GPU, DEFAULT_GPUS, PlanRequest, plan
from scaling.planner_shape import ShapeFlags
from scaling.planner_time import Budget
from scaling.units import parse_optional_size

EXAMPLES = """examples:
  scaling plan --params 124M --tokens 2.5B --gpu H100-SXM --gpus 8
  scaling plan --params 7B                      # tokens set compute-optimally under --law
  scaling plan --compute 3.8e25 --law epoch --json
  scaling plan --params 1B --tokens 20B --gpu A100-80GB --region france --price-per-gpu-hour 1.8
  scaling plan --preset gpt2-124m --tie-weights --qkv-bias --tokens 10B --micro-batch 64
  scaling plan --budget-usd 10000 --gpu H100-SXM     # the compute-optimal run $10,000 buys
  scaling plan --days 3 --gpus 64 --law epoch
  scaling plan --params 7B --inference-tokens 2T     # training + serving 2T tokens (Sardana et al. 2023)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="FLOPs, time, cost, energy, CO2 and memory for a training run, and its compute-optimal twin",
        description="Plan a pretraining run. Give --params and --tokens, --params alone (tokens set\n"
        "compute-optimally under --law), or --compute alone (compute-optimal params and tokens).\n"
        "Every default assumption is printed with its source.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("the run")
    what.add_argument("--params", metavar="N", help="parameters: 124M, 2.5B, 7e9, 124_000_000")
    what.add_argument("--tokens", metavar="D", help="training tokens: 2.5B, 1.5T, 3e11")
    what.add_argument("--compute", metavar="C", help="training FLOPs, alone: 1e21, 3.8e25")
    what.add_argument(
        "--law",
        help="chinchilla (Hoffmann eq. 10), epoch (Besiroglu 2024), kaplan (Kaplan 2020), "
        "or a law file from `scaling fit` (default: chinchilla; --inference-tokens needs it named)",
    )
    hw = p.add_argument_group("hardware")
    hw.add_argument("--gpu", help=f"device from the hardware table, any case (default: {DEFAULT_GPU}), or cpu "
                    "(this machine's measured matmul peak)")
    hw.add_argument("--peak-tflops", type=float, metavar="X", help="dense peak TFLOP/s of a device not in the table")
    hw.add_argument("--memory-gb", type=float, metavar="GB", help="memory of such a device (default: the table's)")
    hw.add_argument("--gpus", type=int, metavar="K", help=f"GPUs (default: {DEFAULT_GPUS}; 1 with --gpu cpu)")
    hw.add_argument("--precision", choices=PRECISIONS,
                    help="training precision (default: bf16; with --gpu cpu, what the trainer would choose)")
    hw.add_argument(
        "--mfu",
        type=float,
        metavar="F",
        help="model FLOPs utilisation in (0, 1] (default: 0.40, Llama 3 paper's 38-43%%)",
    )
    costs = p.add_argument_group("cost, energy and carbon")
    costs.add_argument("--price-per-gpu-hour", type=float, metavar="USD", help="default: the table's dated price")
    costs.add_argument("--power-w", type=float, metavar="W", help="power per GPU (default: the device's TDP)")
    costs.add_argument("--pue", type=float, metavar="P", help="data-centre PUE (default: 1.10, Google 2023)")
    grid = costs.add_mutually_exclusive_group()
    grid.add_argument("--carbon-intensity", type=float, metavar="KG_PER_KWH", help="grid kg CO2e per kWh")
    grid.add_argument("--region", metavar="NAME", help="grid region from the sourced table (default: world)")
    _shape_flags(p)
    _time_flags(p)
    extra = p.add_argument_group("budgets and inference")
    budget = extra.add_mutually_exclusive_group()
    budget.add_argument("--budget-usd", type=float, metavar="USD", help="plan what this many dollars buy on --gpu")
    budget.add_argument("--gpu-hours", type=float, metavar="H", help="plan what this many GPU-hours buy")
    budget.add_argument("--days", type=float, metavar="T", help="plan what T days on --gpus GPUs buy")
    extra.add_argument("--inference-tokens", metavar="T", help="tokens to serve after training (2N FLOPs each): "
                       "the N, D of least training + serving compute for the loss (Sardana et al. 2023)")
    extra.add_argument("--target-loss", type=float, metavar="L",
                       help="the loss to reach (with --inference-tokens; default: the planned run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def _shape_flags(p) -> None:
    shape = p.add_argument_group("shape (memory, attention and time terms)")
    shape.add_argument("--preset", metavar="NAME", help="a trainer preset (gptcore.config.PRESETS: gpt2-124m, ...)")
    shape.add_argument("--n-layer", type=int, help="layers (with --d-model; default: derived from --params)")
    shape.add_argument("--d-model", type=int, help="width (with --n-layer)")
    shape.add_argument("--n-head", type=int, help="attention heads (with a preset or --n-layer/--d-model)")
    shape.add_argument("--vocab", type=int, metavar="V", help="vocabulary size (default: GPT-2's 50,257)")
    shape.add_argument("--ctx", type=int, help="sequence length (default: 1024, or the preset's)")
    shape.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                       help="share the token embedding with the LM head (default: the preset's, else untied)")
    shape.add_argument("--qkv-bias", action=argparse.BooleanOptionalAction, default=None,
                       help="bias on the Q/K/V projection (OpenAI's GPT-2 has it; default: the trainer's, none)")
    shape.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per step (default: 1)")
    shape.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimiser step (default: 1)")
    shape.add_argument("--attention", choices=ATTENTION_KERNELS, default="flash",
                       help="flash: fused SDPA keeping no scores, as the trainer runs (default); eager: scores kept")
    shape.add_argument("--recompute", choices=RECOMPUTE, default="none",
                       help="activation recomputation: none (default), selective (Korthikanti 2022 §5), full")


def _time_flags(p) -> None:
    t = p.add_argument_group("time (the run's schedule; not counted unless given)")
    t.add_argument("--eval-every", type=int, metavar="STEPS", help="evaluate every STEPS steps and at the last")
    t.add_argument("--eval-batches", type=int, default=10, help="batches per evaluation (default: 10)")
    t.add_argument("--final-eval-batches", type=int, metavar="BATCHES",
                   help="batches of the last step's evaluation (default: --eval-batches)")
    t.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="default: at each evaluation")
    t.add_argument("--checkpoint-gb-per-s", type=float, metavar="GBPS",
                   help="checkpoint write speed (default: 1 GB/s, one NVMe drive, conservatively)")
    t.add_argument("--goodput", type=float, metavar="F", help="fraction of wall clock spent training, for "
                   "restarts and failures (default: none; Llama 3 reports above 0.9 on 16K GPUs)")
    t.add_argument("--measured-from", metavar="DIR", help="take the MFU measured by an earlier run, sweep or "
                   "launch (its summary.json files) instead of --mfu")


def _cpu(precision: str | None) -> tuple[str, float]:
    """(precision, peak FLOP/s) of this machine's CPU as `scaling launch` plans it: the trainer's dtype
    choice and its measured (cached) matmul peak. Imports torch: only for --gpu cpu."""
    from scaling.launch.planning import cpu_device

    return cpu_device(precision)


def run(args) -> int:
    cpu = args.gpu is not None and args.gpu.strip().lower() == "cpu"
    precision = args.precision
    device = {"gpu": args.gpu, "peak_tflops": args.peak_tflops}
    if cpu:
        if args.peak_tflops is not None:
            raise UserError("--peak-tflops: --gpu cpu measures its own peak; drop one of them")
        precision, peak = _cpu(precision)
        device = {"gpu": None, "peak_tflops": peak / 1e12, "device_name": "cpu (measured peak)"}
    shape = ShapeFlags(preset=args.preset, n_layer=args.n_layer, d_model=args.d_model, n_head=args.n_head,
                       vocab_size=args.vocab, ctx=args.ctx, tie_weights=args.tie_weights, qkv_bias=args.qkv_bias)
    budget = Budget(usd=args.budget_usd, gpu_hours=args.gpu_hours, days=args.days)
    request = PlanRequest(
        params=parse_optional_size(args.params, "--params"),
        tokens=parse_optional_size(args.tokens, "--tokens"),
        compute=parse_optional_size(args.compute, "--compute"),
        **device, memory_gb=args.memory_gb, gpus=args.gpus or (1 if cpu else DEFAULT_GPUS), mfu=args.mfu,
        precision=precision or "bf16",
        price_per_gpu_hour=args.price_per_gpu_hour, power_w=args.power_w, pue=args.pue,
        carbon_intensity=args.carbon_intensity, region=args.region, law=args.law, shape=shape,
        micro_batch=args.micro_batch, grad_accum=args.grad_accum, attention=args.attention,
        recompute=args.recompute, budget=budget, eval_every=args.eval_every, eval_batches=args.eval_batches,
        final_eval_batches=args.final_eval_batches,
        checkpoint_every=args.checkpoint_every, checkpoint_gb_per_s=args.checkpoint_gb_per_s,
        goodput=args.goodput, measured_from=args.measured_from,
        inference_tokens=parse_optional_size(args.inference_tokens, "--inference-tokens"),
        target_loss=args.target_loss,
    )
    result = plan(request)
    print(dumps_json(result.to_json(), indent=2) if args.json else render_plan(result))
    return 0
