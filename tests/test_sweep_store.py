"""The results store: concurrent writer processes, kill -9 of a writer, exactly-once completion."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import cli_env

from gptcore.errors import UserError
from sweeps.grid import make_grid, resolve
from sweeps.store import Store

# A writer process: claims runs until none is left, heartbeats, and finishes each with a summary.
WRITER = textwrap.dedent("""
    import sys, time
    from sweeps.store import Store, local_owner
    store, owner = Store(sys.argv[1]), local_owner()
    pause = float(sys.argv[2])
    while (spec := store.claim(owner)) is not None:
        for _ in range(3):
            store.heartbeat(spec.run_id, owner, 1.0)
            time.sleep(pause)
        summary = {"final_val_loss": spec.tokens / 1e6, "final_train_loss": 0.0, "params": spec.params,
                   "non_embedding_params": spec.non_embedding_params, "tokens": spec.tokens,
                   "flops": spec.flops}
        assert store.finish(spec.run_id, owner, "completed", None, summary)
""")


def specs(n_sizes: int = 5, n_tokens: int = 8):
    params = ",".join(f"{12 * 4**i}K" for i in range(n_sizes))
    tokens = ",".join(f"{16 * (i + 1)}K" for i in range(n_tokens))
    return resolve(make_grid("store", params=params, tokens=tokens, ctx=64), 1000, "data")


def writers(sweep_dir: Path, n: int, pause: float) -> list[subprocess.Popen]:
    cmd = [sys.executable, "-c", WRITER, str(sweep_dir), str(pause)]
    return [subprocess.Popen(cmd, env=cli_env()) for _ in range(n)]


def check_exactly_once(sweep_dir: Path, n_runs: int) -> list[dict]:
    store = Store(sweep_dir)
    rows = store.rows()
    assert len(rows) == n_runs
    assert all(r["status"] == "completed" and r["completions"] == 1 for r in rows)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with open(sweep_dir / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["run_id"] for r in table) == sorted(r["run_id"] for r in rows)
    assert all(float(t["loss"]) == int(t["tokens"]) / 1e6 for t in table)
    store.close()
    return rows


def test_four_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    runs = specs()
    Store(tmp_path).register(runs)
    procs = writers(tmp_path, 6, pause=0.05)  # runs last 0.15 s, so all six writers get some
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    rows = check_exactly_once(tmp_path, len(runs))
    assert all(r["attempts"] == 1 for r in rows)
    assert len({r["owner"] for r in rows}) >= 4  # the runs really were spread over the writers


def test_a_writer_killed_mid_run_leaves_its_run_for_the_next_writer(tmp_path):
    runs = specs(2, 4)
    Store(tmp_path).register(runs)
    (victim,) = writers(tmp_path, 1, pause=1.0)  # 3 s per run: the kill lands inside one
    store = Store(tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline:
        statuses = [r["status"] for r in store.rows()]
        if "completed" in statuses and "running" in statuses:
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    held = [r for r in store.rows() if r["status"] == "running"]
    assert len(held) == 1  # killed while holding a claim
    procs = writers(tmp_path, 4, pause=0.0)
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    rows = {r["run_id"]: r for r in check_exactly_once(tmp_path, len(runs))}
    assert rows[held[0]["run_id"]]["attempts"] == 2  # taken over from the dead owner, completed once


def test_a_changed_config_is_refused_and_nothing_is_mixed(tmp_path):
    runs = specs(2, 2)
    store = Store(tmp_path)
    assert store.register(runs)["new"] == 4
    before = (tmp_path / "sweep.db").stat().st_size, store.rows()
    grid = make_grid("store", params="12K,48K", tokens="16K,32K", ctx=64, train={"lr": 1e-2})
    changed = resolve(grid, 1000, "data")
    assert [r.run_id for r in changed] == [r.run_id for r in runs]
    with pytest.raises(UserError, match="4 run\\(s\\) with a different config"):
        store.register(changed)
    assert store.rows() == before[1]
    assert store.register(runs) == {"new": 0, "finished": 0, "retried": 0, "pending": 4}


def test_only_the_owner_finishes_and_failed_runs_are_queued_again(tmp_path):
    runs = specs(1, 2)
    store = Store(tmp_path)
    store.register(runs)
    spec = store.claim("me:1")
    assert not store.finish(spec.run_id, "someone-else:2", "completed")
    assert store.finish(spec.run_id, "me:1", "failed", "boom")
    assert not store.finish(spec.run_id, "me:1", "completed")  # already final
    with open(tmp_path / "sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "failed" and row["reason"] == "boom" and row["loss"] == ""
    assert store.register(runs)["retried"] == 1


def test_the_database_is_in_wal_mode_with_a_busy_timeout(tmp_path):
    Store(tmp_path).register(specs(1, 1))
    db = sqlite3.connect(tmp_path / "sweep.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _damage(path: Path, kind: str) -> None:
    """Put a torn or foreign sweep.db where a sweep's store should be."""
    if kind == "truncated":
        store = Store(path.parent)
        store.register(specs(2, 2))
        store.close()
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "random bytes":
        path.write_bytes(os.urandom(8192))
    elif kind == "text":
        path.write_text("run_id,loss\nL1,3.2\n")
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "text", "directory"])
def test_a_file_that_is_not_a_store_is_a_one_line_error_and_kept(prepared_data, tmp_path, capsys, kind):
    from scaling.cli import main

    db = tmp_path / "sweep.db"
    _damage(db, kind)
    before = db.read_bytes() if db.is_file() else None
    code = main(["sweep", "--params", "12K", "--tokens", "4K", "--ctx", "16", "--data", str(prepared_data),
                 "--out", str(tmp_path), "--dry-run", "--no-estimate"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{db} is not a sweep store" in err
    assert (db.read_bytes() if db.is_file() else None) == before


def test_a_store_locked_too_long_by_another_process_is_a_one_line_error_not_a_damaged_store(
        prepared_data, tmp_path, capsys, monkeypatch):
    """Another process holding the write lock past the busy timeout: say so, and keep the store as it is."""
    import sqlite3

    from scaling.cli import main
    from sweeps import store as store_module

    argv = ["sweep", "--params", "12K", "--tokens", "4K", "--ctx", "16", "--data", str(prepared_data),
            "--out", str(tmp_path), "--dry-run", "--no-estimate"]
    store_module.Store(tmp_path).close()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.5)
    before = (tmp_path / "sweep.db").read_bytes()
    holder = sqlite3.connect(tmp_path / "sweep.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code = main(argv)  # even a dry run takes the write lock, to see what it would register
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "stayed locked by another process" in err and "not a sweep store" not in err
    assert (tmp_path / "sweep.db").read_bytes() == before
