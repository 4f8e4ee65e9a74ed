"""One torchrun process of a launch: `python -m scaling.launch.rank OUT --threads T`, started by
scaling.launch.executors.run_torchrun.

Every rank trains the run registered in OUT/prediction.json with gptcore's trainer, DDP or FSDP as
OUT/sweep.json's `parallel` says (the launch's choice); rank 0 writes. On every node of a multi-node
torchrun (`scaling launch --executor torchrun --nodes M` prints the command for the other nodes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from analysis.prediction import read_prediction
from sweeps.grid import RunSpec
from sweeps.runner import run_dir
from sweeps.worker import die_with_parent


def rank_train_config(out: Path, threads: int | None):
    """The TrainConfig one torchrun rank trains: the registered run, its batch split over the processes."""
    from sweeps.runner import read_settings, recorded_loggers, train_config

    registered = read_prediction(out)
    spec = RunSpec.from_dict({k: v for k, v in registered.run.items()
                              if k in {f.name for f in dataclasses.fields(RunSpec)}})
    settings = read_settings(out)
    return train_config(spec, settings["data"], run_dir(out, spec.run_id), threads, loggers=recorded_loggers(out),
                        world=int(os.environ.get("WORLD_SIZE", "1")), parallel=settings.get("parallel", "ddp"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.launch.rank", description=__doc__)
    ap.add_argument("out", type=Path, help="the launch directory")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    die_with_parent(os.getppid())  # torchrun's agent: a killed launch takes its ranks with it
    from gptcore.preemption import EXIT_REQUEUE
    from gptcore.train import close_distributed, train

    try:
        summary = train(rank_train_config(args.out, args.threads or None))
    finally:
        close_distributed()
    return EXIT_REQUEUE if summary.status == "preempted" else 0


if __name__ == "__main__":
    from gptcore.train import exit_process

    exit_process(main())
