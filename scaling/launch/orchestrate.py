"""The launch, step by step: size the run from the law, plan and print it, confirm, register the
prediction, train it with the chosen executor, and hand back the trainer's summary.

Re-running the same command resumes the run from its last checkpoint; the prediction is kept as is.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.prediction import PREDICTION_NAME, Prediction, read_prediction
from gptcore.config import GPTConfig
from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from gptcore.loggers import check_available
from scaling.launch import executors, prediction, sizing
from scaling.launch.confirm import confirm
from scaling.launch.planning import make_plan, parallel_choice, parallel_lines, plan_lines
from scaling.launch.request import EXECUTORS, LaunchRequest
from scaling.law import FittedLaw, file_sha256
from scaling.parallelism import ParallelChoice
from scaling.planner import MAX_PARAMS
from sweeps import keep
from sweeps.grid import RunSpec
from sweeps.runner import SETTINGS_NAME, check_run_tree, recorded_loggers, run_dir


def _check_request(req: LaunchRequest) -> None:
    from sweeps.orchestrate import choose_executor

    if req.executor not in EXECUTORS:
        raise UserError(f"--executor: choose one of {', '.join(EXECUTORS)}, got {req.executor!r}")
    for flag, value in (("--gpus", req.gpus), ("--nodes", req.nodes), ("--tasks-per-node", req.tasks_per_node)):
        if value < 1:
            raise UserError(f"{flag}: must be 1 or more, got {value}")
    if req.nodes * req.tasks_per_node != req.gpus:
        raise UserError(f"--gpus {req.gpus} is not --nodes {req.nodes} x --tasks-per-node {req.tasks_per_node}")
    if req.executor == "local" and req.gpus > 1:
        raise UserError(f"--executor local trains one process on this machine, not {req.nodes} node(s) x "
                        f"{req.tasks_per_node}; use --executor torchrun or slurm")
    if req.executor == "torchrun" and req.nodes > 1:
        host, _, port = (req.rdzv_endpoint or "").rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--executor torchrun --nodes {req.nodes} needs --rdzv-endpoint HOST:PORT, an address "
                            f"of this node the other nodes reach (got {req.rdzv_endpoint!r})")
    choose_executor(req.executor)  # --executor slurm with no cluster: refused before anything is written


def prepare_launch(req: LaunchRequest) -> tuple[Prediction, RunSpec, Path, bool, ParallelChoice]:
    """Resolve and print the plan, confirm, register the prediction. Returns (prediction, spec, data, new,
    the parallelism the run's processes take)."""
    from gptcore.data import open_dataset
    from sweeps.orchestrate import prepared_data
    from sweeps.provenance import data_hash

    _check_request(req)
    out = req.out.resolve()
    law = FittedLaw.load(req.law)
    law_sha = file_sha256(req.law)
    n_req, d_req = sizing.choose_size(law, req.compute, req.params, req.tokens)
    if n_req > MAX_PARAMS:  # found here, before a model nothing can build is sized and planned
        raise UserError(f"{'--compute' if req.compute is not None else '--params'}: the run would have "
                        f"{n_req:.3g} parameters, more than the planner takes (at most {MAX_PARAMS:.0e})")
    grid = sizing.sweep_grid(law, req.grid)
    stored = read_prediction(out)
    data = prepared_data(req.data, out)  # the bundled corpus is prepared into OUT/data once the arguments hold
    record = prediction.request_record(req, law_sha, data)
    if stored is not None:
        prediction.check_same_request(stored, record, out)
    ds = open_dataset(data)
    if req.compute is not None:
        d_req = sizing.tokens_for_budget(law, req.compute, n_req, ds.vocab_size, grid.ctx)
    training = sizing.training_for(law, req.law, grid, ds.vocab_size, data_hash(ds.meta), req.lr_law,
                                   req.allow_other_lr_rule)
    spec = sizing.final_spec(law, n_req, d_req, grid, ds.vocab_size, data_hash(ds.meta), training.lr_law)
    if stored is not None:
        prediction.check_same_run(stored, spec, out)
    if req.executor != "local" and spec.batch_size % req.gpus:
        raise UserError(f"--gpus: the run's batch of {spec.batch_size} sequences does not split over {req.gpus} "
                        "processes; use a power of two")
    cfg = GPTConfig.from_dict(spec.model)
    n, d = sizing.law_params(law, cfg), sizing.trained_tokens(spec)
    if stored is not None and stored.plan.get("mfu") is not None:  # as registered: not measured again
        planned = make_plan(req, n, d, cfg, stored.plan["mfu"], spec,
                            mfu_source=stored.plan.get("mfu_source", "as registered"))
    else:
        planned = make_plan(req, n, d, cfg, spec=spec, data=str(data))
    choice = parallel_choice(req, planned)
    sizes = {"law_params": n, "tokens": d, "requested_params": n_req, "requested_tokens": d_req}
    registered = stored or prediction.new_prediction(law, req.law, record, spec, sizes, data, planned, training)
    for line in plan_lines(planned, spec, registered) + parallel_lines(choice):
        print(line)
    if stored is not None:
        print(f"prediction registered {stored.created_utc} in {out / PREDICTION_NAME} (kept as is); resuming")
        return stored, spec, data, False, choice
    confirm(planned.plan.cost_usd, planned.plan.wall_clock_hours, req)
    out.mkdir(parents=True, exist_ok=True)
    if not prediction.write_once_json(out / PREDICTION_NAME, registered.to_json()):
        raise UserError(f"{out / PREDICTION_NAME} appeared while planning (another launch?); re-run to resume")
    print(f"prediction registered in {out / PREDICTION_NAME} before training", flush=True)
    return registered, spec, data, True, choice


def launch(req: LaunchRequest) -> dict | None:
    """Plan, register, train (or resume) and return the trainer's summary of the final run; None when a
    preemption signal stopped the training (checkpointed: re-running the same command resumes it)."""
    from sweeps.store import Store

    _, spec, data, _, choice = prepare_launch(req)
    out = req.out.resolve()
    store = Store(out)
    try:
        store.register([spec])
    finally:
        store.close()
    check_run_tree(out, [spec.run_id])
    policy, change = keep.choose(req.keep_checkpoints, keep.recorded_policy(out))
    if change:
        print(change)
    loggers = recorded_loggers(out) if req.loggers is None else req.loggers  # a re-run logs as before
    check_available(loggers)
    settings = {"grid": "launch", "data": str(data), "data_hash": spec.data_hash, "keep_checkpoints": policy,
                "final_run": spec.run_id,  # sweeps.keep: `last` and `best` keep this run's checkpoint
                "loggers": list(loggers), "parallel": choice.parallel}  # every rank trains with it
    atomic_write_json(out / SETTINGS_NAME, settings)
    if req.executor == "local":
        if executors.run_local(out, spec, req.progress):
            return None
    elif req.executor == "slurm":
        executors.run_slurm(out, spec, req.partition, req.timeout_min, req.nodes, req.tasks_per_node, req.progress)
    elif executors.run_torchrun(out, spec, req.nodes, req.tasks_per_node, req.rdzv_endpoint):
        return None
    summary_path = run_dir(out, spec.run_id) / "summary.json"
    store = Store(out)
    rows = store.rows()
    store.close()
    keep.apply(out, rows, settings)  # torchrun's outcome is recorded here, not by a worker
    if not summary_path.is_file():
        row = next(r for r in rows if r["run_id"] == spec.run_id)
        raise UserError(f"the final run did not finish ({row['status']}: {row['reason']}); "
                        f"see {run_dir(out, spec.run_id)}; re-run the same command to resume")
    return json.loads(summary_path.read_text())
