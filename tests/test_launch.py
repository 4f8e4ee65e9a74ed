"""`scaling launch` on real runs: confirmation, the plan's measured MFU, a killed launch's resume, torchrun on
one and two nodes, and its one-line errors (the demo's own launch, from a fitted law: test_demo.py).

The launches here plan from a law written by hand, so they need no sweep first and run beside the demo on
the other test worker; each trains a model of 4.4M parameters (L1-d64, one of the tiny grid's sizes) with
the compact vocabulary: a small shape, as every second of a launch's steps is CI's time.
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import LAUNCH_REPORT_KEYS as REPORT_KEYS
from helpers import ROOT, cli_env, scaling, start_scaling

from scaling.cli import main

GRID = """description = "test grid: 3 sizes x 2 budgets"
ctx = 32
params = ["12K", "50K", "200K"]  # non-embedding targets: L1-d32, L1-d64, L2-d96
tokens = ["8K", "16K"]

[train]
eval_every = 16
eval_batches = 2
"""
# L1-d64, not the 8.8M L2-d128 of before: this module and test_reliability.py's launches took 30 s less
# in all (2026-12-01); most of what is left of a launch is process start-up and the plan's MFU measurement.
LAUNCH_PARAMS = "4.4M"


@pytest.fixture(scope="module")
def quick(prepared_data, tmp_path_factory) -> dict:
    """A law written by hand (no demo to wait for), the test grid and the data: enough to plan a launch."""
    from scaling.law import ChinchillaLaw, FittedLaw

    root = tmp_path_factory.mktemp("quick")
    (root / "grid.toml").write_text(GRID)
    FittedLaw.of(ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)).save(root / "law.json")
    return {"root": root, "grid": str(root / "grid.toml"), "data": str(prepared_data), "law": str(root / "law.json")}


def launch_args(law: dict, out: Path, tokens: str = "8K", *extra: str) -> list[str]:
    return ["launch", "--law", law["law"], "--params", LAUNCH_PARAMS, "--tokens", tokens, "--grid", law["grid"],
            "--data", law["data"], "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("extra, reason", [
    (["--price-per-gpu-hour", "1e9", "--confirm-above", "1"], "above --confirm-above $1.00"),
    (["--confirm-above-hours", "1e-9"], "of wall clock, above --confirm-above-hours 1e-09"),  # no price on a CPU
])
def test_costly_or_long_launch_needs_yes_without_a_terminal(quick, tmp_path, extra, reason):
    out = tmp_path / "costly"
    done = scaling(*launch_args(quick, out, "8K", *extra), timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert reason in done.stderr and "pass --yes" in done.stderr
    assert not (out / "prediction.json").exists()


def test_on_a_cpu_the_plan_measures_the_runs_own_shape_and_on_a_named_gpu_assumes(quick, tmp_path):
    """A CPU's MFU depends on the matrix sizes, so a launch here measures a few steps of the final run's shape
    (as `sweep --dry-run` does) rather than assume Llama 3's 0.40; on a named GPU the assumption stays."""
    here = scaling(*launch_args(quick, tmp_path / "cpu", "8K", "--confirm-above-hours", "1e-9"), timeout=300)
    (device,) = [line for line in here.stdout.splitlines() if line.strip().startswith("device ")]
    assert "measured here: 6 training steps of this shape" in device, here.stdout
    mfu = float(device.split("MFU ")[1].split()[0])
    assert 0 < mfu < 1 and "assumed" not in device
    named = scaling(*launch_args(quick, tmp_path / "gpu", "8K", "--gpu", "h100-sxm", "--price-per-gpu-hour", "1e9",
                                 "--confirm-above", "1"), timeout=300)
    (device,) = [line for line in named.stdout.splitlines() if line.strip().startswith("device ")]
    assert "MFU 0.40 assumed: Llama 3" in device, named.stdout


def test_a_long_run_of_unknown_cost_is_confirmed_too(monkeypatch):
    """The CPU case: the planner knows no price, so only the wall clock can call for a confirmation."""
    import io

    from gptcore.errors import UserError
    from scaling.launch.confirm import confirm
    from scaling.launch.request import LaunchRequest

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    req = LaunchRequest(law=Path("law.json"), out=Path("out"))
    confirm(None, 23.0, req)  # under a day: no question
    with pytest.raises(UserError, match="takes about 1e\\+25 h of wall clock, above --confirm-above-hours 24; pass"):
        confirm(None, 1e25, req)
    confirm(None, 1e25, LaunchRequest(law=Path("law.json"), out=Path("out"), yes=True))


@pytest.mark.slow
def test_killed_launch_resumes(quick, tmp_path):
    out = tmp_path / "killed"
    # 32K tokens on the test grid (ctx 32, checkpointed every 16 steps, its eval_every): the kill lands after
    # the first checkpoint and well before the end.
    args = launch_args(quick, out, "32K")
    proc = start_scaling(*args)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("runs/*/ckpt.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.2)
    assert ckpt is not None, "the launch never checkpointed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = ckpt.parent
    assert not (run / "summary.json").exists()
    pred = (out / "prediction.json").read_bytes()

    done = scaling(*args, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert "resuming" in (run / "train.log").read_text()  # the trainer picked up its checkpoint
    assert (out / "prediction.json").read_bytes() == pred
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "completed" and math.isfinite(report["actual_loss"])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # every step once: no loss and no duplicate


@pytest.mark.slow
def test_torchrun_two_cpu_processes_report(quick, tmp_path):
    out = tmp_path / "ddp"
    done = scaling(*launch_args(quick, out, "8K", "--executor", "torchrun", "--gpus", "2"), timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report) and math.isfinite(report["actual_loss"])
    assert report["device"].startswith("2 x ")
    pred = json.loads((out / "prediction.json").read_text())
    summary = json.loads((out / "runs" / pred["run"]["run_id"] / "summary.json").read_text())
    assert summary["world_size"] == 2
    # It said which parallelism and why (a CPU's memory is not modelled: DDP), and trained with it
    assert "parallel           ddp over 2 processes: auto: replicated" in done.stdout, done.stdout
    assert "memory per GPU" in done.stdout and summary["parallel"] == "ddp"


@pytest.mark.slow
def test_torchrun_across_two_nodes_is_one_run_of_world_size_two(quick, tmp_path):
    """Two torchrun agents on this host, as two nodes: the launch's own (rank 0's node) and the one started
    with the command the launch prints for the other nodes; a c10d rendezvous at --rdzv-endpoint."""
    out = tmp_path / "two-nodes"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = start_scaling(*launch_args(quick, out, "8K", "--executor", "torchrun", "--nodes", "2",
                                        "--tasks-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}",
                                        "--parallel", "fsdp", "--yes"), stdout=subprocess.PIPE, text=True)
    lines = []
    for line in launch.stdout:
        lines.append(line)
        if "on each of the other 1 node(s)" in line:
            break
    other = shlex.split(lines[-1].split("torchrun ", 1)[1])
    agent = subprocess.run([sys.executable, "-m", "torch.distributed.run", *other], env=cli_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    rest = launch.stdout.read()
    assert launch.wait(timeout=600) == 0 and agent.returncode == 0, (rest, agent.stderr[-3000:])
    pred = json.loads((out / "prediction.json").read_text())
    summary = json.loads((out / "runs" / pred["run"]["run_id"] / "summary.json").read_text())
    assert (summary["world_size"], summary["parallel"], summary["status"]) == (2, "fsdp", "completed")
    assert "parallel           fsdp over 2 processes: asked for" in "".join(lines)
    assert math.isfinite(json.loads((out / "report.json").read_text())["actual_loss"])


@pytest.mark.parametrize("argv, message", [
    (["--params", "1M", "--compute", "1e12"], "--compute: give --compute C alone"),
    (["--tokens", "1M"], "--compute: give --compute C alone, or --params N"),
    (["--params", "8.8M", "--tokens", "8K", "--executor", "torchrun", "--gpus", "3"], "--gpus: the run's batch"),
    (["--params", "8.8M", "--tokens", "8K", "--executor", "slurm"], "--executor slurm: no SLURM cluster answers"),
    (["--compute", "1e40"], "--compute: the run would have 6.9"),
    (["--params", "8.8M", "--tokens", "8K", "--executor", "torchrun", "--tasks-per-node", "0"],
     "--tasks-per-node: must be 1 or more, got 0"),
    (["--params", "8.8M", "--tokens", "8K", "--nodes", "2"], "--executor local trains one process on this machine"),
    (["--params", "8.8M", "--tokens", "8K", "--executor", "torchrun", "--nodes", "2"], "needs --rdzv-endpoint"),
    (["--params", "8.8M", "--tokens", "8K", "--executor", "torchrun", "--gpus", "3", "--tasks-per-node", "2"],
     "--gpus 3 is not --nodes 1 x --tasks-per-node 2"),
    (["--params", "8.8M", "--tokens", "8K", "--parallel", "fsdp"], "--parallel fsdp shards over 2 or more"),
    (["--params", "7B", "--tokens", "10M", "--executor", "torchrun", "--gpus", "8", "--gpu", "H100-SXM",
      "--parallel", "ddp"], "--parallel ddp: ddp needs"),  # a 7B model's replicated states: over 80 GB
])
def test_bad_launch_arguments_are_one_line_errors(quick, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr("sweeps.orchestrate.cluster_answers", lambda: False)  # no SLURM cluster, even where one runs
    out = tmp_path / "bad"
    code = main(["launch", "--law", quick["law"], "--grid", quick["grid"], "--data", quick["data"],
                 "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()  # nothing written: a re-run with other arguments is not refused


def test_arguments_are_checked_before_the_bundled_corpus_is_prepared(quick, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["launch", "--law", quick["law"], "--compute", "1e12", "--tokens", "1M", "--out", str(out)]) == 2
    assert "--tokens: goes with --params" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--timeout-min", "-5"], "argument --timeout-min: must be a finite number > 0, got '-5'"),
    (["--confirm-above", "-5"], "argument --confirm-above: must be a finite number >= 0"),
    (["--confirm-above-hours", "nan"], "argument --confirm-above-hours: must be a finite number >= 0"),
])
def test_bad_launch_flags_are_refused_when_parsed(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        main(["launch", "--law", str(tmp_path / "law.json"), "--compute", "1e12", "--out", str(tmp_path / "o"),
              *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("settings", [b'{"grid": "ti', b"[1, 2]", b"\xff\xfe"])
def test_a_torn_sweep_json_behind_the_law_is_a_one_line_error(quick, tmp_path, capsys, settings):
    from scaling.law import ChinchillaLaw, FittedLaw

    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_bytes(settings)
    law = tmp_path / "law.json"
    FittedLaw.of(ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
                 rows={"source": str(tmp_path / "sweep" / "sweep.csv")}).save(law)
    out = tmp_path / "o"
    assert main(["launch", "--law", str(law), "--params", "8.8M", "--tokens", "8K", "--data", quick["data"],
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.json is not a sweep's settings file" in err and "--grid" in err
    assert not out.exists()


def test_missing_law_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["launch", "--law", str(tmp_path / "none.json"), "--compute", "1e12",
                 "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_law_file_with_E_on_its_bound_loads_and_a_negative_E_does_not(tmp_path):
    """`scaling fit` writes E = 0 when the data show no irreducible loss; launch must read that law."""
    from gptcore.errors import UserError
    from scaling.law import ChinchillaLaw, FittedLaw

    path = tmp_path / "law.json"
    FittedLaw.of(ChinchillaLaw(E=0.0, A=9.8, B=10.5, alpha=0.14, beta=0.06)).save(path)
    assert FittedLaw.load(path).law.E == 0.0
    FittedLaw.of(ChinchillaLaw(E=-0.1, A=9.8, B=10.5, alpha=0.14, beta=0.06)).save(path)
    with pytest.raises(UserError, match="negative E"):
        FittedLaw.load(path)


def test_a_compute_budget_is_spent_on_the_shape_the_sizing_rule_picks():
    from scaling.launch.sizing import choose_size, law_params, shape_for, tokens_for_budget
    from scaling.law import ChinchillaLaw, FittedLaw

    law = FittedLaw.of(ChinchillaLaw(E=1.0, A=400.0, B=400.0, alpha=0.34, beta=0.28))
    compute = 1e13
    n_law, _ = choose_size(law, compute, None, None)
    cfg = shape_for(law, n_law, 32_779, 64)  # the compact bundled vocabulary: embeddings set a floor on N
    assert law_params(law, cfg) > 2 * n_law  # the rule rounded far up, so the law's D would overspend
    d = tokens_for_budget(law, compute, n_law, 32_779, 64)
    assert 6 * law_params(law, cfg) * d == pytest.approx(compute, rel=1e-12)
