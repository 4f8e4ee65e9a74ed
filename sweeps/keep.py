"""Which finished runs keep their checkpoint: `--keep-checkpoints last|best|none|all` of sweeps and launches.

A sweep's runs are measurements (their losses are in sweep.csv, their curves in metrics.jsonl); the launch's
final run is the model a person goes on to use. So the default, `last`, keeps the final (the launch's) run's
checkpoint and drops every sweep run's once it finishes: a demo leaves one ckpt.pt, not one per run.
`best` keeps the finished run with the lowest final validation loss in the directory, `none` keeps none,
`all` keeps every one. A run that is not finished always keeps its checkpoint: it resumes from it.

The policy is recorded in the directory's sweep.json (with the launch's run as `final_run`), so the workers,
SLURM jobs included, apply it as each run finishes, and a re-run without the flag applies the same one.
A dropped checkpoint leaves gptcore.checkpoint.DROPPED, which `scaling generate` and `eval` read to say so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

POLICIES = ("last", "best", "none", "all")
DEFAULT = "last"
FINISHED = ("completed", "diverged")  # never trained again; failed and timed-out runs are retried: kept
WHAT = {"last": "the final (launch) run's kept, a sweep's runs' dropped as they finish",
        "best": "only the finished run with the lowest final val loss keeps its checkpoint",
        "none": "every run's dropped as it finishes", "all": "every run's kept"}


def choose(asked: str | None, recorded: str | None) -> tuple[str, str | None]:
    """The policy for this command (the flag, else the directory's recorded one, else DEFAULT) and, when the
    flag changes the recorded one, a line that says so."""
    policy = asked or recorded or DEFAULT
    if recorded is None or policy == recorded:
        return policy, None
    return policy, (f"--keep-checkpoints {policy}: this directory kept checkpoints by {recorded!r} so far; "
                    f"{policy!r} now applies to its finished runs (a checkpoint already dropped does not come back)")


def recorded_policy(sweep_dir: Path) -> str | None:
    """The policy a directory's sweep.json records, or None (no file, or one written before policies were)."""
    from sweeps.runner import recorded_setting

    policy = recorded_setting(sweep_dir, "keep_checkpoints")
    return policy if policy in POLICIES else None


def _loss(row: dict) -> float:
    """A finished run's final val loss from its stored summary; inf for none (diverged) or not finite."""
    summary = json.loads(row["summary_json"]) if row.get("summary_json") else {}
    loss = summary.get("final_val_loss") if row["status"] == "completed" else None
    return loss if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf


def keepers(policy: str, finished: list[dict], final_run: str | None) -> set[str]:
    """The run ids among the `finished` store rows whose checkpoint `policy` keeps (`final_run`: the
    launch's run; None in a sweep, which has no final run)."""
    ids = [r["run_id"] for r in finished]
    if policy == "all":
        return set(ids)
    if policy == "last":
        return {final_run} & set(ids)
    if policy == "best":
        scored = [(_loss(r), i, r["run_id"]) for i, r in enumerate(finished) if math.isfinite(_loss(r))]
        return {min(scored)[2]} if scored else set()
    return set()


@dataclass(frozen=True)
class Applied:
    kept: list[str]
    dropped: list[str]  # run ids whose checkpoint was deleted now


def apply(sweep_dir: Path, rows: list[dict], settings: dict) -> Applied:
    """Drop the checkpoints of the finished runs (of the store `rows`) that the directory's recorded policy
    does not keep. Idempotent, and safe while other runs train: only finished runs are touched, and each
    worker applies it after its own run's result is committed, so the last to finish sees every result."""
    from gptcore import checkpoint
    from sweeps.runner import run_dir

    policy = settings.get("keep_checkpoints", "all")  # a sweep.json from before policies: nothing is dropped
    finished = [r for r in rows if r["status"] in FINISHED]
    keep = keepers(policy, finished, settings.get("final_run"))
    why = (f"--keep-checkpoints {policy}: {WHAT.get(policy, policy)}; to keep checkpoints, sweep or launch "
           "with --keep-checkpoints all or best into a new --out (a finished run is not trained again)")
    dropped = [r["run_id"] for r in finished
               if r["run_id"] not in keep and checkpoint.drop(run_dir(sweep_dir, r["run_id"]), why)]
    return Applied(sorted(keep), dropped)


def summary_line(sweep_dir: Path, rows: list[dict], policy: str) -> str:
    """One line: how many finished runs keep a checkpoint, under which policy."""
    from gptcore import checkpoint
    from sweeps.runner import run_dir

    finished = [r["run_id"] for r in rows if r["status"] in FINISHED]
    kept = [i for i in finished if (run_dir(sweep_dir, i) / checkpoint.FILENAME).is_file()]
    return (f"checkpoints: {len(kept)} of {len(finished)} finished run(s) keep theirs "
            f"(--keep-checkpoints {policy}: {WHAT[policy]})")
