"""Shared fixtures: a private cache directory, and the bundled corpus, prepared once per test session; the
slowest test files run first."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import PEAK_CACHE

# The slowest test files, slowest first (per-file times of `pytest --durations=0`, 2026-12-02, serial: the
# demo 3.5-4.5 min, then 3 min down to 50 s). scripts/test.sh runs the suite on 2 pytest-xdist workers with
# --dist loadfile --no-loadscope-reorder, which hand out whole files in collection order: longest first
# keeps a long file from starting last and leaving the other worker idle (xdist's own order, by the number of
# tests in a file, put the 5-test demo file late). Files not named keep their order, after these.
SLOWEST_FIRST = ("test_demo.py", "test_reliability.py", "test_fit_auto.py", "test_sweep_slurm.py", "test_launch.py",
                 "test_train.py", "test_predictive.py", "test_sweep_local.py", "test_parallel.py",
                 "test_launch_slurm.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory) -> Path:
    """XDG_CACHE_HOME for the whole session (subprocesses inherit it): a test never writes the user's cache.

    It starts as a copy of the user's CPU peak cache, when there is one, so that training tests do not each
    spend seconds measuring the matmul peak again; what the tests write lands in the copy. Tests of the cache
    itself set their own XDG_CACHE_HOME with monkeypatch.
    """
    real = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / PEAK_CACHE
    home = tmp_path_factory.mktemp("xdg-cache")
    if real.is_file():
        (home / PEAK_CACHE).parent.mkdir(parents=True)
        shutil.copyfile(real, home / PEAK_CACHE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory) -> Path:
    """A data dir of the whole bundled corpus (gutenberg-mini, 4.7M tokens) with the compact vocabulary.

    Read it with `gptcore.data.open_dataset(prepared_data)` or pass it as `--data`. Shared by the session:
    do not write into it.
    """
    from gptcore.data import BUNDLED_CORPUS, prepare

    out = tmp_path_factory.mktemp("data") / "gutenberg-mini"
    prepare(BUNDLED_CORPUS, out, tokenizer="gpt2-compact", progress=False)
    return out


@pytest.fixture(scope="session")
def bundled_books() -> list[str]:
    """The texts of the books in the first bundled shard (24 books, about 8.9 MB of real English text)."""
    from gptcore.data import BUNDLED_CORPUS, read_documents

    return list(read_documents(BUNDLED_CORPUS[0]))
