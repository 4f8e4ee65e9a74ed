"""Do the time estimates hold? The sweep's `--dry-run` estimate and `scaling launch`'s plan against the wall
time the same commands then take, on the tiny grid with the bundled corpus (issue 13: target within 25%).

Steps, each a real `scaling` command in its own process: prepare the data (unless --data), `sweep --dry-run`
(its printed estimate), the sweep itself (timed), `fit`, then `launch` of a model 1.5x the sweep's largest
N and D, as the demo does (its plan's wall clock, from prediction.json, against the run's wall time as the
store recorded it and against its training steps alone; the command's own start-up, planning and report
are reported beside, not counted: they are seconds, whatever the run's length). Timings on a loaded
machine mean little: the script refuses to start when the 1-minute load average is above --max-load
(default 1.5) unless --force.

    PYTHONPATH=. python benchmarks/plan_accuracy.py [--data DIR] [--grid tiny] [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET = 0.25  # within 25% of the measured wall time
UNITS_S = {"s": 1.0, "min": 60.0, "h": 3600.0, "days": 86400.0}


def scaling(*argv: str) -> tuple[str, float]:
    """Run `python -m scaling ARGV`; (stdout, wall seconds). A failing step stops the benchmark."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scaling", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"scaling {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout, wall


def estimate_seconds(dry_run_out: str) -> float:
    """The seconds in the sweep plan's 'estimate: ~7.1 min for 12 run(s) ...' line."""
    m = re.search(r"estimate: ~([\d.,]+) (s|min|h|days)", dry_run_out)
    if m is None:
        sys.exit(f"no estimate in the sweep's --dry-run output:\n{dry_run_out}")
    return float(m.group(1).replace(",", "")) * UNITS_S[m.group(2)]


def step_seconds(metrics: Path) -> float:
    """Training time of a run from its metrics.jsonl: tokens between rows over the measured tokens/s."""
    seconds, tokens = 0.0, 0
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        seconds += (row["tokens"] - tokens) / row["tokens_per_s"]
        tokens = row["tokens"]
    return seconds


def compare(name: str, planned_s: float, measured_s: float) -> dict:
    ratio = planned_s / measured_s
    return {"what": name, "planned_s": planned_s, "measured_s": measured_s, "planned_over_measured": ratio,
            "within_target": abs(ratio - 1) <= TARGET}


def run(args) -> list[dict]:
    from scaling.commands.demo import FINAL_PARAMS_FACTOR, FINAL_TOKENS_FACTOR

    out = args.out
    data = args.data
    if data is None:
        from gptcore.data import BUNDLED_CORPUS

        data = out / "data"
        scaling("data", "prepare", *map(str, BUNDLED_CORPUS), "--out", str(data), "--no-progress")
    sweep = ["sweep", "--grid", args.grid, "--data", str(data), "--out", str(out / "sweep"), "--executor", "local"]
    dry, _ = scaling(*sweep, "--dry-run")
    _, sweep_wall = scaling(*sweep)
    runs_wall = claimed_to_finished_s(out / "sweep")
    results = [compare(f"sweep --grid {args.grid} --dry-run estimate vs its runs' wall time (first claim to last "
                       "finish, store)", estimate_seconds(dry), runs_wall),
               {"what": "the sweep command's time outside its runs (start-up, its own estimate's measurement, "
                "workers' start-up): not in the estimate", "measured_s": sweep_wall - runs_wall}]
    law = out / "law.json"
    scaling("fit", str(out / "sweep"), "--out", str(law))
    table = [json.loads(p.read_text()) for p in (out / "sweep" / "runs").glob("*/summary.json")]
    n = round(FINAL_PARAMS_FACTOR * max(s["params"] for s in table))
    d = round(FINAL_TOKENS_FACTOR * max(s["tokens"] for s in table))
    launch = out / "launch"
    _, launch_wall = scaling("launch", "--law", str(law), "--params", str(n), "--tokens", str(d), "--grid", args.grid,
                             "--data", str(data), "--out", str(launch), "--yes", "--no-progress")
    prediction = json.loads((launch / "prediction.json").read_text())
    planned = prediction["plan"]["wall_clock_hours"] * 3600
    metrics = next((launch / "runs").glob("*/metrics.jsonl"))
    run_wall = claimed_to_finished_s(launch)  # its one run
    results += [compare("launch plan vs the final run's wall time (claimed to finished, store)", planned, run_wall),
                compare("launch plan vs the final run's training steps alone", planned, step_seconds(metrics))]
    results.append({"what": "the launch command's time outside the run (start-up, planning and its MFU "
                    "measurement, report): not in the plan", "measured_s": launch_wall - run_wall})
    return results


def claimed_to_finished_s(sweep_dir: Path) -> float:
    """The runs' wall time as the store recorded it: from the first claim to the last finish (the trainers'
    start-up, evaluations, checkpoints and summaries included; a launch is a one-run sweep directory)."""
    import sqlite3

    with sqlite3.connect(sweep_dir / "sweep.db") as db:
        ((claimed, finished),) = db.execute("SELECT MIN(claimed_at), MAX(finished_at) FROM runs").fetchall()
    return finished - claimed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a prepared data dir (default: the bundled corpus, prepared)")
    parser.add_argument("--grid", default="tiny")
    parser.add_argument("--out", type=Path, help="working dir (default: a temporary one)")
    parser.add_argument("--max-load", type=float, default=1.5, help="refuse to start above this load average")
    parser.add_argument("--force", action="store_true", help="run even on a loaded machine")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if load > args.max_load and not args.force:
        print(f"not run: 1-minute load average {load:.2f} > {args.max_load} (timings would mean little); "
              "pass --force to run anyway")
        return 1
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
        args.out = args.out or Path(tmp)
        results = run(args)
    print(f"load average at the start {load:.2f}; target: planned within {TARGET:.0%} of measured")
    for r in results:
        if "planned_s" not in r:
            print(f"  {r['what']}: {r['measured_s']:.1f} s")
            continue
        mark = "ok" if r["within_target"] else "MISSED"
        print(f"  {r['what']}: planned {r['planned_s']:.1f} s, measured {r['measured_s']:.1f} s, "
              f"ratio {r['planned_over_measured']:.2f} [{mark}]")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
