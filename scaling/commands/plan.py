"""`scaling plan`: FLOPs, GPU-hours, wall clock, cost, energy, CO2 and memory for a run, and the
compute-optimal alternative. Parses flags and delegates to scaling.planner; never imports torch."""

from __future__ import annotations

import argparse
import json

from gptcore.hardware import PRECISIONS
from scaling.plan_render import render_plan
from scaling.planner import DEFAULT_GPU, DEFAULT_GPUS, PlanRequest, plan
from scaling.units import parse_optional_size

EXAMPLES = """examples:
  scaling plan --params 124M --tokens 2.5B --gpu H100-SXM --gpus 8
  scaling plan --params 7B                      # tokens set compute-optimally under --law
  scaling plan --compute 3.8e25 --law epoch --json
  scaling plan --params 1B --tokens 20B --gpu A100-80GB --region france --price-per-gpu-hour 1.8
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
        default="chinchilla",
        help="chinchilla (Hoffmann eq. 10), epoch (Besiroglu 2024), kaplan (Kaplan 2020), "
        "or a law file from `scaling fit` (default: chinchilla)",
    )
    hw = p.add_argument_group("hardware")
    hw.add_argument("--gpu", help=f"device from the hardware table, any case (default: {DEFAULT_GPU})")
    hw.add_argument("--peak-tflops", type=float, metavar="X", help="dense peak TFLOP/s of a device not in the table")
    hw.add_argument("--memory-gb", type=float, metavar="GB", help="memory of such a device (default: the table's)")
    hw.add_argument("--gpus", type=int, default=DEFAULT_GPUS, metavar="K", help=f"GPUs (default: {DEFAULT_GPUS})")
    hw.add_argument("--precision", choices=PRECISIONS, default="bf16", help="training precision (default: bf16)")
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
    shape = p.add_argument_group("shape (memory and attention terms)")
    shape.add_argument("--ctx", type=int, default=1024, help="sequence length (default: 1024)")
    shape.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per step (default: 1)")
    shape.add_argument("--n-layer", type=int, help="layers (with --d-model; default: derived from --params)")
    shape.add_argument("--d-model", type=int, help="width (with --n-layer)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    request = PlanRequest(
        params=parse_optional_size(args.params, "--params"),
        tokens=parse_optional_size(args.tokens, "--tokens"),
        compute=parse_optional_size(args.compute, "--compute"),
        gpu=args.gpu,
        peak_tflops=args.peak_tflops,
        memory_gb=args.memory_gb,
        gpus=args.gpus,
        mfu=args.mfu,
        precision=args.precision,
        price_per_gpu_hour=args.price_per_gpu_hour,
        power_w=args.power_w,
        pue=args.pue,
        carbon_intensity=args.carbon_intensity,
        region=args.region,
        law=args.law,
        ctx=args.ctx,
        micro_batch=args.micro_batch,
        n_layer=args.n_layer,
        d_model=args.d_model,
    )
    result = plan(request)
    print(json.dumps(result.to_json(), indent=2) if args.json else render_plan(result))
    return 0
