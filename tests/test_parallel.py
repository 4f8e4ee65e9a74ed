"""Data parallelism on CPU with gloo: FSDP2 against DDP, FSDP's sharded checkpoints (a SIGKILL after one
resumes to the same losses), consolidation into ckpt.pt, and --parallel's bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli_env, scaling, wait_for

STEPS = 24
TINY = ["--n-layer", "2", "--n-head", "2", "--d-model", "64", "--ctx", "32", "--batch-size", "4",
        "--max-steps", str(STEPS), "--warmup", "2", "--eval-every", "12", "--eval-batches", "3",
        "--checkpoint-every", "3", "--sample-tokens", "0", "--threads", "1", "--dtype", "fp32",
        "--device", "cpu", "--no-progress", "--json"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun_train(data: Path, out: Path, parallel: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([*TORCHRUN, "-m", "scaling", "train", *TINY, "--data", str(data), "--out", str(out),
                             "--parallel", parallel], env=cli_env(OMP_NUM_THREADS="1"), cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def finished(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), out


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun starts each rank in a session of its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def fsdp_run(prepared_data, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("fsdp") / "run"
    summary, _ = finished(torchrun_train(prepared_data, out, "fsdp"))
    return summary, out


def test_fsdp_without_a_distributed_launch_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, _, err = scaling("train", "--parallel", "fsdp", "--out", str(tmp_path / "o"), *TINY, capsys=capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--parallel fsdp needs a distributed launch" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ddp_and_fsdp_on_two_processes_end_at_the_same_loss(fsdp_run, prepared_data, tmp_path):
    fsdp, fsdp_dir = fsdp_run
    ddp, _ = finished(torchrun_train(prepared_data, tmp_path / "ddp", "ddp"))
    assert (fsdp["parallel"], fsdp["world_size"]) == ("fsdp", 2)
    assert (ddp["parallel"], ddp["world_size"]) == ("ddp", 2)
    assert json.loads((fsdp_dir / "summary.json").read_text())["parallel"] == "fsdp"
    assert fsdp["steps"] == ddp["steps"] == STEPS and losses(fsdp_dir)[-1] < losses(fsdp_dir)[0]
    for key in ("final_train_loss", "final_val_loss"):
        assert fsdp[key] == pytest.approx(ddp[key], rel=1e-3), key
    # FSDP's checkpoints are sharded: one complete dcp-step directory (the newest), no temporary one left
    shards = sorted(p.name for p in fsdp_dir.iterdir() if "dcp-step" in p.name)
    assert shards == [f"dcp-step-{STEPS:08d}"]
    assert {p.name for p in (fsdp_dir / shards[0]).iterdir()} >= {".metadata", "state.pt", "__0_0.distcp",
                                                                  "__1_0.distcp"}


@pytest.mark.slow
def test_fsdp_killed_after_a_checkpoint_resumes_to_the_same_losses(fsdp_run, prepared_data, tmp_path):
    reference, reference_dir = fsdp_run
    out = tmp_path / "killed"
    proc = torchrun_train(prepared_data, out, "fsdp")

    def checkpointed():
        return any(p.name.startswith("dcp-step-") for p in out.iterdir()) if out.is_dir() else False

    wait_for(checkpointed, 300, "the first sharded checkpoint")
    for pid in [*children(proc.pid), proc.pid]:  # both ranks, then torchrun's agent, mid-run
        os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (out / "summary.json").exists()

    resumed, stdout = finished(torchrun_train(prepared_data, out, "fsdp"))
    step = int(stdout.split("resuming ")[1].split(" at step ")[1].split("/")[0])
    assert 3 <= step < STEPS
    assert losses(out) == losses(reference_dir)  # every step, bit for bit: the same batches and state
    assert resumed["final_val_loss"] == reference["final_val_loss"]


@pytest.mark.slow
def test_a_consolidated_fsdp_checkpoint_generates_the_live_models_greedy_text(prepared_data, tmp_path):
    out = tmp_path / "tied"
    done = subprocess.run([*TORCHRUN, str(ROOT / "tests" / "fsdp_greedy.py"), str(prepared_data), str(out)],
                          env=cli_env(OMP_NUM_THREADS="1"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    code, text, err = scaling("generate", "--checkpoint", str(out), "--temperature", "0", "--max-new-tokens",
                              "12", "--device", "cpu")
    assert code == 0, err
    assert text == (out / "live_greedy.txt").read_text() + "\n"
    # Not only the argmax: the consolidated weights give the live sharded model's logits
    import torch

    from gptcore.pretrained import load

    live = torch.load(out / "live_logits.pt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(load(out)(live["batch"]), live["logits"])
    assert json.loads((out / "summary.json").read_text())["parallel"] == "fsdp"


def test_auto_shards_what_the_memory_model_says_does_not_fit_replicated():
    """A 7B-class model (about 112 GB of fp32 weights, gradients and Adam moments) on 80 GB GPUs."""
    from gptcore.config import GPTConfig, count_params
    from scaling.memory import min_gpus, training_memory
    from scaling.parallelism import choose, refusal

    cfg = GPTConfig(vocab_size=50257, ctx=2048, n_layer=32, n_head=32, d_model=4096)
    unsharded = training_memory(count_params(cfg), cfg, 1, "bf16")
    assert unsharded.weights + unsharded.gradients + unsharded.optimizer > 80
    auto = choose("auto", unsharded, 80.0, 8)
    assert auto.parallel == "fsdp" and auto.fits and refusal(auto) is None
    assert auto.memory_per_gpu_gb == pytest.approx(unsharded.sharded(3, 8).total)
    assert auto.fsdp_fewest_gpus == min_gpus(unsharded, 80.0) and 2 <= auto.fsdp_fewest_gpus <= 8
    ddp = choose("ddp", unsharded, 80.0, 8)
    assert not ddp.fits and f"FSDP fits on {auto.fsdp_fewest_gpus} GPUs" in refusal(ddp)
    too_few = choose("fsdp", unsharded, 80.0, 1)
    assert not too_few.fits and len(refusal(too_few).splitlines()) == 1
    # What fits replicated stays DDP; a CPU (memory not modelled) is DDP unless told
    small = training_memory(count_params(GPTConfig()), GPTConfig(), 4, "bf16")
    assert choose("auto", small, 80.0, 8).parallel == "ddp"
    assert choose("auto", unsharded, None, 8).parallel == "ddp"


@pytest.mark.slow
def test_torchrun_of_two_nodes_on_localhost_trains_one_run(prepared_data, tmp_path):
    """`torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT -m scaling
    train ...` started twice, as on two nodes: one run of world size 2 (FSDP across the 'nodes')."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
             "-m", "scaling", "train", *TINY, "--max-steps", "6", "--data", str(prepared_data),
             "--out", str(tmp_path / "run"), "--parallel", "fsdp"]
    nodes = [subprocess.Popen(agent, env=cli_env(OMP_NUM_THREADS="1"), cwd=ROOT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [node.communicate(timeout=600) for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [err[-2000:] for _, err in outs]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["world_size"], summary["parallel"], summary["steps"]) == (2, "fsdp", 6)
    printed = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs if out.strip()]
    assert printed == [summary]  # rank 0's node prints the summary; the other node prints nothing
