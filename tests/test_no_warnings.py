"""No RuntimeWarning leaks from numpy, pandas or scipy: the commands run with warnings as errors, on a real
degenerate sweep (the demo's tiny grid on a loaded machine: loss rises with tokens at the smallest size),
whose bootstrap refits run off to scales beyond float range and whose frontier is not finite."""

from __future__ import annotations

import pytest
from helpers import scaling

# A sweep of the test grid as the demo ran it (6 runs, 3 sizes x 2 budgets): its fit is degenerate.
DEGENERATE = """run_id,params,tokens,flops,loss,status,reason
L1-d32-D8K,2111552,8000,51055104000.0,6.9761962890625,completed,
L1-d32-D16K,2111552,16000,102110208000.0,7.108985185623169,completed,
L1-d64-D8K,4247680,8000,103289856000.0,6.984493970870972,completed,
L2-d96-D8K,6519936,8000,162353664000.0,7.007098436355591,completed,
L1-d64-D16K,4247680,16000,206579712000.0,7.163367509841919,completed,
L2-d96-D16K,6519936,16000,324707328000.0,6.989642381668091,completed,
L2-d96-D32K,6519936,32000,649414656000.0,,diverged,loss is nan at step 12
"""
STRICT = ("-W", "error::RuntimeWarning")


def test_fit_predict_and_plan_of_a_degenerate_sweep_warn_nothing(tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text(DEGENERATE)
    law = tmp_path / "law.json"
    fit = scaling("fit", str(runs), "--bootstrap", "200", "--plot", str(tmp_path / "plots"), python_flags=STRICT)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "Warning" not in fit.stderr and "Traceback" not in fit.stderr
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5
    written = scaling("fit", str(runs), "--bootstrap", "200", "--out", str(law), python_flags=STRICT)
    assert written.returncode in (0, 2) and "Traceback" not in written.stderr, written.stderr[-3000:]
    if law.is_file():  # the law may be refused (exponent of the wrong sign); if written, it is used
        for argv in (("predict", "--law", str(law), "--params", "10M", "--tokens", "1M"),
                     ("plan", "--law", str(law), "--params", "10M", "--tokens", "1M", "--gpus", "1")):
            done = scaling(*argv, python_flags=STRICT)
            assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr[-3000:]


def test_an_infinite_or_refused_replicate_is_an_unbounded_or_missing_bound():
    import math
    import warnings

    import numpy as np

    from scaling.law import percentile_interval

    samples = np.column_stack([np.r_[np.arange(1.0, 20.0), math.inf], np.full(20, math.nan),
                               np.r_[np.arange(1.0, 11.0), np.full(10, math.inf)], np.arange(1.0, 21.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = percentile_interval(samples, 0.9)
    assert hi[0] == math.inf and abs(lo[0] - 1.95) < 1e-12  # 1 infinite refit of 20: the upper 5% only
    assert math.isnan(lo[1]) and math.isnan(hi[1])
    assert math.isfinite(lo[2]) and hi[2] == math.inf
    assert [lo[3], hi[3]] == percentile_interval(samples[:, 3], 0.9)  # finite columns as numpy computes them


def test_a_scale_that_underflowed_to_zero_starts_a_refit_without_warning():
    """A degenerate fit's E can underflow to 0 (the small grid's median split gave one): the backtests' and
    the bootstrap's warm starts take it back to log scale, finite and silent."""
    import warnings

    import numpy as np

    from scaling.fit import chinchilla

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        theta = chinchilla.params_to_theta(0.0, 406.4, 410.7, 0.34, 0.28)
    assert np.isfinite(theta).all() and theta[2] < -700
    E, A, B, alpha, beta = chinchilla.theta_to_params(theta)[0]
    assert E < 1e-300 and A == pytest.approx(406.4) and (alpha, beta) == (0.34, 0.28)
