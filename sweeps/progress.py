"""The progress bar over a sweep's runs, with each running run's step/total, latest loss and time left, read
from the store and the run's metrics.jsonl. On a terminal a tqdm bar; without one, a plain line now and
then (gptcore.progress)."""

from __future__ import annotations

import math
from pathlib import Path

from gptcore.progress import format_duration, progress_bar
from sweeps.store import FINAL


class SweepProgress:
    """A bar over `run_ids`; `update(rows)` moves it to what the store says. With `sweep_dir`, each running
    run shows how far it is: "L1-d32-D8K 40/128 loss 7.13 ~12 s left"."""

    def __init__(self, run_ids: list[str], enabled: bool = True, sweep_dir: str | Path | None = None):
        self.run_ids = set(run_ids)
        self.sweep_dir = Path(sweep_dir) if sweep_dir is not None else None
        self.bar = progress_bar(len(run_ids), unit="run", enabled=enabled)
        self.done = 0
        self.postfix = None

    def running(self, row: dict) -> str:
        """One running run as the bar shows it: its id, step/total, loss and time left where known."""
        where = self._where(row)
        if where:
            return f"{row['run_id']} {where}"
        loss = row.get("latest_loss")
        return f"{row['run_id']} loss {loss:.3f}" if loss is not None else row["run_id"]

    def _where(self, row: dict) -> str:
        import json

        from sweeps.runner import latest_row, run_dir

        if self.sweep_dir is None:
            return ""
        try:
            metrics = latest_row(run_dir(self.sweep_dir, row["run_id"]) / "metrics.jsonl")
            tokens = json.loads(row["spec_json"])["tokens"] if row.get("spec_json") else None
        except (ValueError, KeyError, TypeError, OSError):  # a refused run id, a spec without tokens: no detail
            return ""
        if not metrics or not metrics.get("step") or not metrics.get("tokens") or not tokens:
            return ""
        step, done = metrics["step"], metrics["tokens"]
        total = max(step, math.ceil(tokens / (done / step)))  # the trainer rounds the budget up to whole steps
        text = f"{step}/{total}"
        loss = metrics.get("val_loss", metrics.get("train_loss"))
        if isinstance(loss, float) and math.isfinite(loss):
            text += f" loss {loss:.3f}"
        rate = metrics.get("tokens_per_s")
        if rate and step < total:
            text += f" ~{format_duration((total - step) * done / step / rate)} left"
        return text

    def update(self, rows: list[dict]) -> None:
        mine = [r for r in rows if r["run_id"] in self.run_ids]
        done = sum(r["status"] in FINAL for r in mine)
        running = [self.running(r) for r in mine if r["status"] == "running"]
        failed = sum(r["status"] in ("failed", "timeout", "diverged") for r in mine)
        postfix = (f"failed={failed} " if failed else "") + "; ".join(running)
        if done == self.done and postfix == self.postfix:
            return  # redraw only on change
        self.postfix = postfix
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(done - self.done)
        self.done = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
