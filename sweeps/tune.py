"""`scaling tune`: one Optuna study per model size over the learning rate, then the law lr_opt(N).

Each trial trains the size on a short budget (its smallest token budget in the grid, or --trial-tokens) with an
LR drawn log-uniformly around Kaplan's rule, reporting every validation loss to Optuna as the trainer
measures it (its on_eval callback), which prunes trials that fall behind (MedianPruner or Hyperband). A
diverged or crashed trial is recorded as FAIL with its reason; the study goes on. Studies live in an Optuna
storage, so a second `scaling tune` resumes them: trials already finished count toward --trials, and trials
left RUNNING by a killed process are failed by Optuna's heartbeat (RDB storages). Then lr_opt(N) = c * N^-k
is fitted to each size's best LR and written to DIR/lr_law.json, which `scaling sweep --lr-law` reads (and
finds by default at runs/tune). The command (scaling.commands.tune) draws the trials' plot.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import warnings
from pathlib import Path

import numpy as np

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_text
from gptcore.progress import progress_bar
from sweeps import hparams
from sweeps.grid import Grid, RunSpec, resolve

LR_SPAN = 10.0  # search LR in [rule / 10, rule * 10]
TRIALS_CSV = "trials.csv"
LR_LAW_NAME = "lr_law.json"
HEARTBEAT_S = 30


class TrialDiverged(Exception):
    """The trial's loss went non-finite: a FAIL with this reason, not a crash."""


def make_storage(url: str):
    """An Optuna storage: sqlite:///... or any RDB URL (with heartbeats), or journal:///PATH for shared FS."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith("journal://"):
        path = Path(url[len("journal://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise UserError(f"--storage {url!r}: give an RDB URL (sqlite:///DIR/optuna.db) or journal:///PATH")
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=4 * HEARTBEAT_S)
    except Exception as e:  # a wrong URL, a missing driver, a server that does not answer
        raise UserError(f"--storage {url!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def base_runs(grid: Grid, vocab_size: int, data_id: str, tokens: int | None) -> list[RunSpec]:
    """One run per model size: its smallest budget in the grid (or `tokens`), the LR rule as the centre."""
    by_size: dict[int, RunSpec] = {}
    for spec in resolve(grid, vocab_size, data_id):
        old = by_size.get(spec.non_embedding_params)
        if old is None or spec.tokens < old.tokens:
            by_size[spec.non_embedding_params] = spec
    runs = sorted(by_size.values(), key=lambda s: s.non_embedding_params)
    if tokens:
        runs = [resolve_tokens(s, tokens) for s in runs]
    return runs


def resolve_tokens(spec: RunSpec, tokens: int) -> RunSpec:
    """The same run with another budget (its FLOPs scale with it)."""
    return dataclasses.replace(
        spec,
        tokens=tokens,
        flops=spec.flops * tokens / spec.tokens,
        run_id=spec.run_id.rsplit("-D", 1)[0] + f"-D{tokens}",
    )


def study_name(grid_name: str, spec: RunSpec) -> str:
    """Stable per size and config (LR aside): a changed setting starts a new study, never mixes."""
    key = dataclasses.replace(spec, lr=0.0, lr_source="tune")
    return f"{grid_name}-{spec.run_id.rsplit('-D', 1)[0]}-{key.config_hash[:8]}"


def pruning_callback(trial, last_step: int):
    """The trainer's on_eval for a trial: each val loss goes to Optuna as it is measured, and a trial the
    pruner says has fallen behind stops there (optuna.TrialPruned). The last evaluation is the trial's
    result, so it is reported but never pruned."""

    def on_eval(step: int, val_loss: float) -> None:
        import optuna

        if not math.isfinite(val_loss):
            return  # a diverging trial: the trainer reports it as diverged at its next step
        trial.report(val_loss, step)
        if step < last_step and trial.should_prune():
            raise optuna.TrialPruned(f"val loss {val_loss:.4f} at step {step}")

    return on_eval


def objective(spec: RunSpec, data: str, trial_root: Path, threads: int | None, lr_range: tuple[float, float]):
    def run(trial) -> float:
        import optuna

        from gptcore.train import total_steps_for, train
        from sweeps.runner import train_config

        lr = trial.suggest_float("lr", *lr_range, log=True)
        out = trial_dir(trial_root, trial.number)
        cfg = train_config(dataclasses.replace(spec, lr=lr, lr_source="tune"), data, out, threads)
        try:
            summary = train(cfg, log=lambda msg: None, on_eval=pruning_callback(trial, total_steps_for(cfg, 1)))
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded as FAIL with the reason; the study goes on
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}".splitlines()[0][:300])
            raise
        finally:
            drop_trial_checkpoint(out)
        if summary.status == "diverged":
            reason = f"diverged: loss not finite at step {summary.diverged_step}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialDiverged(reason)
        return summary.final_val_loss

    return run


def trial_dir(trial_root: Path, number: int) -> Path:
    return trial_root / f"trial-{number:04d}"


def drop_trial_checkpoint(out: Path) -> None:
    """A trial is never resumed once it ends (the next one is a new trial, in a new folder): its checkpoint
    goes, its metrics.jsonl and summary.json stay."""
    from gptcore import checkpoint

    checkpoint.drop(out, "a tune trial's checkpoint is dropped when the trial ends, since trials never resume; "
                    "train the size with `scaling train` to keep one")


def make_pruner(name: str, eval_every: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=eval_every)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=eval_every)
    return optuna.pruners.NopPruner()


@dataclasses.dataclass(frozen=True)
class TuneOptions:
    trials: int
    pruner: str = "median"
    seed: int = 0
    lr_range: tuple[float, float] | None = None  # default: Kaplan's rule for the size, /LR_SPAN to xLR_SPAN
    threads: int | None = None
    progress: bool = True


def tune_size(spec: RunSpec, name: str, storage, data: str, out: Path, opts: TuneOptions) -> object:
    """Run the study of one size up to `opts.trials` finished trials (resuming it) and return it."""
    import optuna
    from optuna.trial import TrialState

    eval_every = int(spec.train.get("eval_every", 100))
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=opts.seed, n_startup_trials=3),
        pruner=make_pruner(opts.pruner, eval_every),
    )
    study.set_user_attr("non_embedding_params", spec.non_embedding_params)
    study.set_user_attr("params", spec.params)
    study.set_user_attr("run", spec.run_id)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in study.trials)
    for t in study.trials:  # those a killed process left (a RUNNING one may be another process's, live)
        if t.state != TrialState.RUNNING:
            drop_trial_checkpoint(trial_dir(out / "trials" / name, t.number))
    if opts.trials > done:
        centre = hparams.default_lr(spec.non_embedding_params)
        lr_range = opts.lr_range or (centre / LR_SPAN, centre * LR_SPAN)
        run = objective(spec, data, out / "trials" / name, opts.threads, lr_range)
        bar = progress_bar(opts.trials, unit="trial", desc=spec.run_id, initial=done, enabled=opts.progress)
        try:
            study.optimize(run, n_trials=opts.trials - done, catch=(Exception,), callbacks=[_TrialProgress(bar)])
        finally:
            bar.close()
    return study


class _TrialProgress:
    """Optuna callback: trial i/n of a size, with the best learning rate so far and its loss."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, study, trial) -> None:
        best = _best(study)
        last = f"last {trial.state.name.lower()}"
        self.bar.set_postfix_str(f"best lr {best.params['lr']:.3g} (val loss {best.value:.4f}), {last}"
                                 if best else f"no trial completed yet, {last}", refresh=False)
        self.bar.update(1)


def trial_rows(studies: list) -> list[dict]:
    from optuna.trial import TrialState

    rows = []
    for study in studies:
        attrs = study.user_attrs
        for t in study.trials:
            loss = t.value if t.state == TrialState.COMPLETE else None
            if t.state == TrialState.PRUNED and t.intermediate_values:
                loss = t.intermediate_values[max(t.intermediate_values)]
            rows.append(
                {
                    "study": study.study_name,
                    "run": attrs.get("run"),
                    "params": attrs.get("params"),
                    "non_embedding_params": attrs.get("non_embedding_params"),
                    "trial": t.number,
                    "lr": t.params.get("lr"),
                    "state": t.state.name,
                    "loss": loss,
                    "reason": t.user_attrs.get("fail_reason", ""),
                }
            )
    return rows


def write_trials_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf,
        fieldnames=["study", "run", "params", "non_embedding_params", "trial", "lr", "state", "loss", "reason"],
        lineterminator="\n",
    )
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def fit_lr_law(sizes, best_lrs, source: str = "") -> hparams.LRLaw:
    """Least squares in log-log space: ln lr = ln c - k ln N. Needs two sizes or more."""
    n, lr = np.asarray(sizes, dtype=float), np.asarray(best_lrs, dtype=float)
    if len(n) < 2 or len(set(n)) < 2:
        raise UserError("fitting lr_opt(N) needs the best LR of at least two sizes")
    slope, intercept = np.polyfit(np.log(n), np.log(lr), 1)
    return hparams.LRLaw(
        coef=float(math.exp(intercept)),
        exponent=float(-slope),
        tuned={int(a): float(b) for a, b in zip(n, lr, strict=True)},
        source=source,
    )


def run_tune(
    grid: Grid,
    out: Path,
    opts: TuneOptions,
    storage_url: str | None,
    data_dir: Path | None,
    tokens: int | None,
) -> Path:
    """Tune every size of `grid`, write trials.csv and lr_law.json into `out`; returns trials.csv's path
    (the command draws it: a runner does not draw)."""
    import optuna

    from gptcore.data import open_dataset
    from sweeps.orchestrate import prepared_data
    from sweeps.provenance import data_hash

    if opts.trials < 1:
        raise UserError(f"--trials must be at least 1, got {opts.trials}")
    out = out.resolve()
    storage = make_storage(storage_url or f"sqlite:///{out / 'optuna.db'}")  # a bad URL fails before any write
    out.mkdir(parents=True, exist_ok=True)
    data = prepared_data(data_dir, out)
    ds = open_dataset(data)
    specs = base_runs(grid, ds.vocab_size, data_hash(ds.meta), tokens)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lr_text = "[{:g}, {:g}]".format(*opts.lr_range) if opts.lr_range else f"[rule/{LR_SPAN:g}, rule*{LR_SPAN:g}]"
    print(
        f"tune {grid.name}: {len(specs)} size(s) x {opts.trials} trial(s), LR log-uniform in {lr_text}, "
        f"pruner {opts.pruner}, storage {storage_url or 'sqlite:///' + str(out / 'optuna.db')}"
    )
    studies = []
    for spec in specs:
        name = study_name(grid.name, spec)
        study = tune_size(spec, name, storage, str(data), out, opts)
        studies.append(study)
        states = {}
        for t in study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        best = _best(study)
        print(
            f"  {spec.run_id}: {', '.join(f'{v} {k.lower()}' for k, v in sorted(states.items()))}; best "
            + (f"lr {best.params['lr']:.3g} (val loss {best.value:.4f})" if best else "none"),
            flush=True,
        )
    rows = trial_rows(studies)
    write_trials_csv(rows, out / TRIALS_CSV)
    bests = [(s.user_attrs["non_embedding_params"], _best(s)) for s in studies]
    bests = [(n, b.params["lr"]) for n, b in bests if b is not None]
    if len(bests) >= 2:
        law = fit_lr_law([n for n, _ in bests], [lr for _, lr in bests], source=f"scaling tune --grid {grid.name}")
        from gptcore.fileio import atomic_write_json

        atomic_write_json(out / LR_LAW_NAME, law.to_dict())
        print(f"lr_opt(N) = {law.coef:.4g} * N^-{law.exponent:.3f} (N non-embedding) -> {out / LR_LAW_NAME}")
    else:
        print("lr_opt(N): not fitted (fewer than two sizes with a completed trial)")
    return out / TRIALS_CSV


def _best(study):
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
    return min(done, key=lambda t: t.value) if done else None
