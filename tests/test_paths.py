"""Paths a person can follow: generate, eval and --init-from take a launch or sweep directory and find its
run (DIR/runs/RUN_ID), or list the runs when there are several."""

from __future__ import annotations

import shutil

import pytest
from helpers import scaling

TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--ctx", "32", "--batch-size", "4", "--max-steps",
        "2", "--eval-every", "2", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1", "--device", "cpu",
        "--no-progress"]


@pytest.fixture(scope="module")
def launch_dir(prepared_data, tmp_path_factory):
    """A directory laid out as launch and sweep leave theirs: DIR/runs/RUN_ID with the run's checkpoint."""
    root = tmp_path_factory.mktemp("paths") / "launch"
    done = scaling("train", "--data", str(prepared_data), *TINY, "--out", str(root / "runs" / "L1-d32-D256"))
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def test_generate_and_init_from_find_the_one_run_of_a_launch_directory(launch_dir, prepared_data, tmp_path,
                                                                        capsys):
    code, out, err = scaling("generate", "--checkpoint", str(launch_dir), "--max-new-tokens", "5", "--device",
                             "cpu", capsys=capsys)
    assert code == 0 and out.strip(), err
    code, _, err = scaling("train", "--data", str(prepared_data), *TINY, "--init-from", str(launch_dir),
                           "--out", str(tmp_path / "fine-tune"), capsys=capsys)
    assert code == 0, err


def test_several_runs_are_listed_for_the_user_to_name_one(launch_dir, prepared_data, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for run_id in ("L1-d32-D256", "L1-d32-D512"):
        shutil.copytree(launch_dir / "runs" / "L1-d32-D256", sweep / "runs" / run_id)
    (sweep / "runs" / "pending-run").mkdir()  # no checkpoint: not one to choose
    code, _, err = scaling("generate", "--checkpoint", str(sweep), capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert (f"{sweep} holds 2 runs with a checkpoint; name one: {sweep / 'runs' / 'L1-d32-D256'}, "
            f"{sweep / 'runs' / 'L1-d32-D512'}") in err, err
    shutil.rmtree(sweep / "runs" / "L1-d32-D256")
    shutil.rmtree(sweep / "runs" / "L1-d32-D512")
    code, _, err = scaling("eval", "--checkpoint", str(sweep), "--data", str(prepared_data), capsys=capsys)
    assert code == 2 and "holds runs but none with a ckpt.pt" in err, err
