"""The unigram baseline: the data's unigram loss (gptcore.data.unigram_nats), recorded by the sweep in
sweep.json, and the fit's warning, kept in the law file and said with every prediction, where fitted runs
end above it (scaling.fit.baseline)."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from gptcore.data import open_dataset, unigram_nats
from gptcore.errors import UserError
from scaling.cli import main
from scaling.fit.baseline import UnigramBaseline
from scaling.law import EPOCH, FittedLaw
from sweeps.orchestrate import recorded_unigram_nats

# The demo's sweep (tiny grid, seed 0, `scaling demo`, 2026-12-03 on a 2-core Xeon): 10 of its 12 final
# validation losses are above the bundled corpus's unigram loss, 6.669 nats.
DEMO_SWEEP = """run_id,params,non_embedding_params,tokens,flops,loss,status
L1-d32-D16K,2112576,12672,16384,104762179584.0,7.5322,completed
L1-d32-D32K,2112576,12672,32256,206250541056.0,6.9357,completed
L1-d64-D16K,4249728,49920,16384,211940278272.0,7.0789,completed
L2-d96-D16K,6523008,223296,16384,333708263424.0,6.9841,completed
L1-d32-D64K,2112576,12672,64000,409227264000.0,6.7571,completed
L1-d64-D32K,4249728,49920,32256,417257422848.0,6.8987,completed
L2-d128-D16K,8795648,396032,16384,454608027648.0,7.1016,completed
L2-d96-D32K,6523008,223296,32256,656988143616.0,6.7839,completed
L1-d64-D64K,4249728,49920,64000,827891712000.0,6.7824,completed
L2-d128-D32K,8795648,396032,32256,895009554432.0,6.8290,completed
L2-d96-D64K,6523008,223296,64000,1303547904000.0,6.5433,completed
L2-d128-D64K,8795648,396032,64000,1775812608000.0,6.5526,completed
"""


def test_the_unigram_loss_of_the_bundled_corpus(prepared_data):
    ds = open_dataset(prepared_data)
    nats = unigram_nats(ds)
    counts = Counter(ds.train.tolist())  # the same add-one estimate, counted another way
    total, vocab = sum(counts.values()), ds.vocab_size
    by_hand = -sum(math.log((counts[t] + 1) / (total + vocab)) for t in ds.val.tolist()) / len(ds.val)
    assert nats == pytest.approx(by_hand, rel=1e-9)
    # A cross-entropy: above the validation split's own unigram entropy, below a uniform guess.
    _, own = np.unique(np.asarray(ds.val), return_counts=True)
    entropy = float(-(own / own.sum() * np.log(own / own.sum())).sum())
    assert entropy < nats < math.log(vocab)


def _sweep_dir(tmp_path, recorded) -> str:
    out = tmp_path / "sweep"
    out.mkdir(parents=True)
    (out / "sweep.csv").write_text(DEMO_SWEEP)
    (out / "sweep.json").write_text(json.dumps({"grid": "tiny", **recorded}))
    return str(out)


def test_fit_warns_of_runs_above_the_unigram_loss_and_every_prediction_repeats_it(tmp_path, capsys):
    sweep = _sweep_dir(tmp_path, {"data_unigram_nats": 6.669})
    law_path = tmp_path / "law.json"
    assert main(["fit", sweep, "--out", str(law_path)]) == 0
    assert "warning: 10 of 12 fitted runs end above their data's unigram loss (6.669 nats" in capsys.readouterr().out
    law = FittedLaw.load(law_path)
    assert law.data_baseline == UnigramBaseline(6.669, 10, 12)
    assert main(["predict", "--law", str(law_path), "--params", "14M", "--tokens", "96K", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert sum("10 of 12 fitted runs end above" in w for w in warnings) == 1, warnings
    # Above every fitted run's loss: no warning, the count still recorded.
    higher = _sweep_dir(tmp_path / "higher", {"data_unigram_nats": 7.6})
    assert main(["fit", higher, "--out", str(tmp_path / "higher.json")]) == 0
    assert "unigram" not in capsys.readouterr().out
    assert FittedLaw.load(tmp_path / "higher.json").data_baseline == UnigramBaseline(7.6, 0, 12)
    # A sweep from before sweeps recorded it: nothing recorded, nothing said.
    before = _sweep_dir(tmp_path / "before", {})
    assert main(["fit", before, "--out", str(tmp_path / "before.json")]) == 0
    assert "unigram" not in capsys.readouterr().out
    assert FittedLaw.load(tmp_path / "before.json").data_baseline is None


@pytest.mark.parametrize("recorded", [{}, {"data_unigram_nats": "6.7"}, {"data_unigram_nats": -1.0},
                                      {"data_unigram_nats": True}, {"data_unigram_nats": None}])
def test_a_sweep_without_a_usable_baseline_records_none(tmp_path, recorded):
    sweep = _sweep_dir(tmp_path, recorded)
    assert recorded_unigram_nats(f"{sweep}/sweep.csv") is None
    assert recorded_unigram_nats(f"{_sweep_dir(tmp_path / 'ok', {'data_unigram_nats': 6.7})}/sweep.csv") == 6.7


@pytest.mark.parametrize("bad", [[1, 2], {"unigram_nats": 6.6, "runs_above": 13, "runs": 12},
                                 {"unigram_nats": 0, "runs_above": 1, "runs": 2}, {"runs_above": 1, "runs": 2},
                                 {"unigram_nats": 6.6, "runs_above": 1.5, "runs": 2}])
def test_a_malformed_data_baseline_in_a_law_file_is_a_one_line_error(tmp_path, capsys, bad):
    path = tmp_path / "law.json"
    FittedLaw.of(EPOCH, data_baseline=UnigramBaseline(6.6, 1, 2)).save(path)
    assert FittedLaw.load(path).data_baseline == UnigramBaseline(6.6, 1, 2)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "data_baseline": bad}))
    with pytest.raises(UserError, match="data_baseline must be an object with unigram_nats > 0"):
        FittedLaw.load(path)
    assert main(["predict", "--law", str(path), "--params", "1B", "--tokens", "20B"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data_baseline must be" in err and len(err.splitlines()) == 1
