"""The sweep's results store: one SQLite file (WAL, busy timeout) that many worker processes write at once.

Why it survives crashes: every change is one short IMMEDIATE transaction, so a writer killed with -9
leaves the last committed state; WAL lets readers go on while one writer commits. A run moves
pending -> running (claimed by one owner) -> completed | diverged | failed | timeout. Only the owner of a
claim may finish it, so a run is completed exactly once even when a stale claim is taken over. The sweep
table `sweep.csv` is rewritten (atomically) inside the same write transaction, so it always matches a
committed state and concurrent writers cannot interleave their rewrites.

The store is on local disk or a filesystem with working POSIX locks (SQLite on NFS is unsafe).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_text
from sweeps.grid import RunSpec

DB_NAME = "sweep.db"
CSV_NAME = "sweep.csv"
FINAL = ("completed", "diverged", "failed", "timeout")
RETRIED = ("failed", "timeout")  # a re-run tries these again; completed and diverged are final results
CSV_COLUMNS = (
    "run_id",
    "params",
    "non_embedding_params",
    "tokens",
    "flops",
    "loss",
    "status",
    "reason",
    "config_hash",
    "final_train_loss",
    "lr",
    "lr_source",
    "batch_size",
    "warmup",
    "n_layer",
    "d_model",
    "ctx",
    "vocab_size",
    "tokens_per_s",
    "attempts",
)
BUSY_TIMEOUT_S = 60.0  # how long a write waits for another process's write lock before giving up
STALE_AFTER_S = 600.0  # a claim whose owner has not sent a heartbeat for this long may be taken over
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    owner TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    latest_loss REAL,
    started_at REAL,
    claimed_at REAL,
    finished_at REAL,
    summary_json TEXT
);
"""


def check_run_id(run_id: object, where: str | os.PathLike) -> str:
    """A run id as `sweeps.grid` makes them (L2-d128-D8K): one plain name, safe to join to a path."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise UserError(f"{where} names a run {run_id!r}, which is not a run id (letters, digits and . _ + -, "
                        "as sweeps name them): refused (an edited store?)")
    return run_id


def local_owner(pid: int | None = None) -> str:
    """The owner name of a process on this host: 'host:pid'."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def process_state(pid: int) -> str | None:
    """The state letter of a process on this host from /proc/PID/stat (R, S, D, Z, X...), or None if none.

    The command name in field 2 may hold spaces and parentheses, so the state is read after its last ')'.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux) or not readable: fall back on signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    return stat[stat.rindex(")") + 2:].split(" ", 1)[0]


def owner_is_dead(owner: str | None) -> bool:
    """True when the owner is a process on this host that no longer runs: gone, or a zombie nobody reaped.

    os.kill(pid, 0) succeeds on a zombie (an exited process whose parent has not waited for it, which lasts
    forever where no init reaps), so the state comes from /proc: Z (zombie) and X (dead) count as dead.
    An owner on another host is judged by its heartbeat alone (`STALE_AFTER_S`).
    """
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return process_state(int(pid)) in (None, "Z", "X")


LOW_DISK_BYTES = 16 << 20  # free space below which an I/O error is taken for a full disk


def disk_problem(e: sqlite3.DatabaseError, path: Path) -> UserError | None:
    """A one-line error for a full disk or an I/O error at `path`, or None for any other database error.

    A full disk shows as SQLITE_FULL, or (at open, where the WAL cannot grow) as a plain "disk I/O error":
    either must be said as what it is, never taken for a foreign file, which the store is not.
    """
    code = getattr(e, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    full = primary == sqlite3.SQLITE_FULL or "disk is full" in str(e)
    if not (full or primary == sqlite3.SQLITE_IOERR or "disk I/O error" in str(e)):
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if full or (free is not None and free < LOW_DISK_BYTES):
        left = "" if free is None else f" ({free / 2**20:.1f} MiB free)"
        return UserError(f"disk full: could not write {path}{left}; the store keeps its last committed state: "
                         "free some space and run again")
    return UserError(f"disk I/O error at {path} ({e}); the store keeps its last committed state: check the "
                     "disk and run again")


def _is_locked(e: sqlite3.DatabaseError) -> bool:
    """SQLite gave up waiting for another connection's lock (after BUSY_TIMEOUT_S)."""
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)


class Store:
    """The results store of one sweep directory."""

    def __init__(self, sweep_dir: str | os.PathLike):
        self.dir = Path(sweep_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self.csv_path = self.dir / CSV_NAME
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")  # a committed result survives power loss too
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:  # a torn or foreign file, or a directory, where the store should be
            if _is_locked(e):
                raise self._locked() from None
            if (disk := disk_problem(e, self.path)) is not None:
                raise disk from None
            raise UserError(f"{self.path} is not a sweep store ({e}); it is kept as is: use another --out") from None

    def close(self) -> None:
        self.db.close()

    def _locked(self) -> UserError:
        return UserError(f"{self.path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s; wait for it "
                         "to finish or stop it, then run again")

    @contextmanager
    def _write(self, commit: bool = True):
        """One write transaction; IMMEDIATE takes the write lock up front, so it never deadlocks."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if _is_locked(e):
                raise self._locked() from None
            raise
        try:
            yield self.db
            self.db.execute("COMMIT" if commit else "ROLLBACK")
        except BaseException as e:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(e, sqlite3.DatabaseError) and (disk := disk_problem(e, self.path)) is not None:
                raise disk from None
            raise

    # ------------------------------------------------------------------------- registering runs

    def register(self, specs: list[RunSpec], dry_run: bool = False, earlier_grids: bool = False) -> dict[str, int]:
        """Add new runs, check known ones against their config hash, and queue failed ones again.

        A run id already stored with a different config is an error: results are never mixed. Stored runs
        outside `specs` are refused, unless `earlier_grids` (a directory that never recorded its grid, which
        sweeps of several grids may have shared): then their ids must still be well formed, and they are
        kept as they are, never trained by this sweep.
        Returns how many runs were new, already finished, and queued again. A dry run changes nothing.
        """
        counts = {"new": 0, "finished": 0, "retried": 0, "pending": 0}
        with self._write(commit=not dry_run) as db:
            self._check_known(db, {s.run_id for s in specs}, earlier_grids)
            changed = []
            for spec in specs:
                row = db.execute("SELECT config_hash, status FROM runs WHERE run_id = ?", (spec.run_id,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO runs (run_id, config_hash, spec_json) VALUES (?, ?, ?)",
                        (spec.run_id, spec.config_hash, json.dumps(spec.to_dict())),
                    )
                    counts["new"] += 1
                elif row["config_hash"] != spec.config_hash:
                    changed.append(f"{spec.run_id} (stored {row['config_hash']}, now {spec.config_hash})")
                elif row["status"] in RETRIED:
                    db.execute(
                        "UPDATE runs SET status = 'pending', reason = NULL, owner = NULL WHERE run_id = ?",
                        (spec.run_id,),
                    )
                    counts["retried"] += 1
                elif row["status"] in FINAL:
                    counts["finished"] += 1
                else:
                    counts["pending"] += 1
            if changed:
                raise UserError(
                    f"{self.dir} holds {len(changed)} run(s) with a different config: "
                    f"{', '.join(changed[:3])}"
                    f"{' ...' if len(changed) > 3 else ''}; use another --out, or the settings that made them"
                )
            self._write_csv(db)
        return counts

    def _check_known(self, db: sqlite3.Connection, run_ids: set[str], earlier_grids: bool) -> None:
        """Every stored run is one of `run_ids` (the grid's): a row planted in the store is refused, not trained."""
        stored = [r["run_id"] for r in db.execute("SELECT run_id FROM runs ORDER BY rowid")]
        foreign = [r for r in stored if r not in run_ids]
        if earlier_grids:
            for run_id in foreign:
                check_run_id(run_id, self.path)
        elif foreign:
            shown = ", ".join(repr(f) for f in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise UserError(f"{self.path} holds {len(foreign)} run(s) that are not in this grid ({shown}): refused "
                            "(an edited store, or another sweep's); use another --out")

    # ------------------------------------------------------------------------- claiming and finishing

    @staticmethod
    def claimable(row, owner: str | None = None) -> bool:
        """A run `owner` may take: pending, or running under a dead or silent owner, or under `owner` itself."""
        if row["status"] == "pending":
            return True
        if row["status"] != "running":
            return False
        return (
            row["owner"] == owner
            or owner_is_dead(row["owner"])
            or (row["heartbeat"] or 0) < time.time() - STALE_AFTER_S
        )

    def claim(self, owner: str, run_id: str | None = None) -> RunSpec | None:
        """Take a run (the given one, or the next claimable one) for `owner`; None if there is none.

        A run is claimable when pending, or running under a claim whose owner is dead or silent, or
        under this same owner (a requeued SLURM job keeps its id and resumes its own run).
        """
        with self._write() as db:
            if run_id is not None:
                rows = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchall()
                if not rows:
                    raise KeyError(f"no run {run_id!r} in {self.path}")
            else:
                rows = db.execute(
                    "SELECT * FROM runs WHERE status IN ('pending', 'running') ORDER BY status = 'running' DESC, rowid"
                ).fetchall()
            for row in rows:
                if self.claimable(row, owner):
                    now = time.time()
                    db.execute(
                        "UPDATE runs SET status = 'running', owner = ?, heartbeat = ?, claimed_at = ?,"
                        " attempts = attempts + 1, started_at = COALESCE(started_at, ?) WHERE run_id = ?",
                        (owner, now, now, now, row["run_id"]),
                    )
                    spec = RunSpec.from_dict(json.loads(row["spec_json"]))
                    if spec.run_id != check_run_id(row["run_id"], self.path) or spec.config_hash != row["config_hash"]:
                        raise UserError(f"{self.path}: run {row['run_id']!r} does not match its stored config: refused")
                    return spec
        return None

    def heartbeat(self, run_id: str, owner: str, latest_loss: float | None) -> bool:
        """Refresh the claim; False when it was taken over (the caller should stop)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE runs SET heartbeat = ?, latest_loss = COALESCE(?, latest_loss) "
                "WHERE run_id = ? AND owner = ? AND status = 'running'",
                (time.time(), latest_loss, run_id, owner),
            )
            return cur.rowcount == 1

    def finish(
        self,
        run_id: str,
        owner: str | None,
        status: str,
        reason: str | None = None,
        summary: dict | None = None,
    ) -> bool:
        """Record a run's outcome, if `owner` still holds its claim.

        owner None is the driver recording a run whose job ended without doing so (it failed to start,
        or was killed): that applies to a pending run too. Returns False when the run is already final
        or another owner holds it.
        """
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        with self._write() as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, reason = ?, summary_json = ?, finished_at = ?,"
                " completions = completions + (? = 'completed'),"
                " latest_loss = COALESCE(?, latest_loss) "
                "WHERE run_id = ? AND ((status = 'running' AND owner = ?)"
                " OR (? IS NULL AND status IN ('pending', 'running')))",
                (
                    status,
                    reason,
                    json.dumps(summary) if summary else None,
                    time.time(),
                    status,
                    (summary or {}).get("final_val_loss"),
                    run_id,
                    owner,
                    owner,
                ),
            )
            if cur.rowcount == 1:
                self._write_csv(db)
            return cur.rowcount == 1

    # ------------------------------------------------------------------------- reading

    def rows(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY rowid")]

    def _write_csv(self, db: sqlite3.Connection) -> None:
        """Rewrite sweep.csv from the rows that have an outcome. Called inside a write transaction."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in db.execute(
            "SELECT * FROM runs WHERE status IN ('completed', 'diverged', 'failed', 'timeout') ORDER BY rowid"
        ):
            w.writerow(csv_row(row))
        atomic_write_text(self.csv_path, buf.getvalue())


def csv_row(row) -> dict:
    """One sweep.csv row: the measured values from the summary where there is one, else the plan's."""
    spec = json.loads(row["spec_json"])
    summary = json.loads(row["summary_json"]) if row["summary_json"] else {}
    completed = row["status"] == "completed"
    model = spec["model"]
    return {
        "run_id": row["run_id"],
        "params": summary.get("params", spec["params"]),
        "non_embedding_params": summary.get("non_embedding_params", spec["non_embedding_params"]),
        "tokens": summary.get("tokens", spec["tokens"]),
        "flops": summary.get("flops", spec["flops"]),
        "loss": summary.get("final_val_loss") if completed else None,
        "status": row["status"],
        "reason": row["reason"],
        "config_hash": row["config_hash"],
        "final_train_loss": summary.get("final_train_loss") if completed else None,
        "lr": spec["lr"],
        "lr_source": spec["lr_source"],
        "batch_size": spec["batch_size"],
        "warmup": spec["warmup"],
        "n_layer": model["n_layer"],
        "d_model": model["d_model"],
        "ctx": model["ctx"],
        "vocab_size": model["vocab_size"],
        "tokens_per_s": summary.get("tokens_per_s"),
        "attempts": row["attempts"],
    }
