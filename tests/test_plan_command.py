"""`scaling plan` end to end: the three input modes, the laws, JSON keys, the table, and bad input."""

import json
from dataclasses import fields

import numpy as np
import pytest
from helpers import scaling

from scaling.cli import main
from scaling.law import CHINCHILLA, EPOCH, KAPLAN, PF_DAY_FLOPS, ChinchillaLaw, FittedLaw
from scaling.planner import PlanRequest, plan

JSON_KEYS = {"params", "tokens", "flops", "flops_with_attention", "tokens_per_param", "peak_flops_per_s",
             "mfu", "gpu_hours", "wall_clock_hours", "cost_usd", "energy_kwh", "co2_kg", "memory_gb_per_gpu",
             "min_gpus", "predicted_loss", "compute_optimal"}


def run_json(capsys, *argv) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_the_issue_keys_and_the_formulas_hold(capsys):
    p = run_json(capsys, "--params", "124M", "--tokens", "2.5B", "--gpu", "a100-80gb", "--gpus", "4",
                 "--mfu", "0.5", "--pue", "1.2", "--carbon-intensity", "0.3", "--price-per-gpu-hour", "2")
    assert JSON_KEYS <= p.keys()
    assert p["flops"] == pytest.approx(6 * 124e6 * 2.5e9)
    assert p["gpu_hours"] == pytest.approx(p["flops"] / (312e12 * 0.5 * 3600))
    assert p["wall_clock_hours"] == pytest.approx(p["gpu_hours"] / 4)
    assert p["cost_usd"] == pytest.approx(p["gpu_hours"] * 2)
    assert p["energy_kwh"] == pytest.approx(p["gpu_hours"] * 0.4 * 1.2)  # A100 TDP 400 W
    assert p["co2_kg"] == pytest.approx(p["energy_kwh"] * 0.3)
    mem = p["memory_gb_per_gpu"]
    for key in ("weights", "gradients", "optimizer", "activations", "total", "zero1", "zero2", "zero3"):
        assert key in mem
    assert mem["zero3"]["total"] < mem["zero2"]["total"] < mem["zero1"]["total"] < mem["total"]
    assert p["min_gpus"] == 1
    assert set(p["compute_optimal"]) >= {"params", "tokens", "predicted_loss"}
    assert p["predicted_loss"] == pytest.approx(float(CHINCHILLA.loss(124e6, 2.5e9)))


def test_compute_alone_gives_the_law_frontier_from_scaling_law(capsys):
    p = run_json(capsys, "--compute", "1e21")
    n, d = CHINCHILLA.compute_optimal(1e21)
    assert (p["params"], p["tokens"]) == pytest.approx((float(n), float(d)))
    assert p["flops"] == pytest.approx(1e21)
    assert p["compute_optimal"]["params"] == pytest.approx(p["params"])


def test_params_alone_sets_tokens_compute_optimally(capsys):
    p = run_json(capsys, "--params", "1B", "--law", "epoch")
    assert p["tokens"] == pytest.approx(float(EPOCH.optimal_tokens(1e9)))
    assert p["compute_optimal"]["params"] == pytest.approx(1e9, rel=1e-9)



def test_json_is_the_typed_plan_field_by_field(capsys):
    """--json prints Plan.to_json(): every field under its own name, the nested ones as objects."""
    printed = run_json(capsys, "--params", "1B", "--tokens", "20B", "--gpu", "A100-80GB", "--gpus", "4")
    typed = plan(PlanRequest(params=1e9, tokens=20e9, gpu="A100-80GB", gpus=4))
    assert printed == json.loads(json.dumps(typed.to_json()))
    assert list(printed) == [f.name for f in fields(typed)]
    assert printed["shape"]["n_layer"] == typed.shape.n_layer and printed["law"]["name"] == typed.law.name
    memory = typed.memory_gb_per_gpu
    assert printed["memory_gb_per_gpu"]["zero3"]["weights"] == pytest.approx(memory.zero[3].weights)
    assert printed["memory_gb_per_gpu"]["total"] == pytest.approx(memory.unsharded.total)
    assert printed["compute_optimal"]["tokens"] == pytest.approx(typed.compute_optimal.tokens)

def test_kaplan_law_is_1_3e9_c_to_the_0_73_in_pf_days():
    n, d = KAPLAN.compute_optimal(PF_DAY_FLOPS)
    assert float(n) == pytest.approx(1.3e9)
    assert float(d) == pytest.approx(PF_DAY_FLOPS / (6 * 1.3e9))
    n1000, _ = KAPLAN.compute_optimal(1000 * PF_DAY_FLOPS)
    assert float(n1000) == pytest.approx(1.3e9 * 1000**0.73)
    d1000 = 1000 * PF_DAY_FLOPS / (6 * float(n1000))
    assert float(KAPLAN.optimal_tokens(float(n1000))) == pytest.approx(d1000)
    p = plan(PlanRequest(compute=1e21, law="kaplan"))
    assert p.params == pytest.approx(1.3e9 * (1e21 / PF_DAY_FLOPS) ** 0.73)
    assert 1.5 < p.predicted_loss < 4.0


def test_law_file_prediction_carries_its_bootstrap_interval(tmp_path, capsys):
    rng = np.random.default_rng(0)
    boot = [[1.69 + rng.normal(0, 0.02), 406.4, 410.7, 0.34, 0.28] for _ in range(200)]
    path = tmp_path / "law.json"
    FittedLaw.of(ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28), bootstrap=boot).save(path)
    p = run_json(capsys, "--params", "124M", "--tokens", "2.5B", "--law", str(path))
    lo, hi = p["predicted_loss_interval"]
    assert lo < p["predicted_loss"] < hi and hi - lo < 0.2
    assert p["compute_optimal"]["predicted_loss_interval"] is not None


def test_region_and_custom_device(capsys):
    world = run_json(capsys, "--params", "1B", "--tokens", "20B")
    france = run_json(capsys, "--params", "1B", "--tokens", "20B", "--region", "France")
    assert france["energy_kwh"] == pytest.approx(world["energy_kwh"])
    assert france["co2_kg"] == pytest.approx(world["co2_kg"] * 0.056 / 0.481)
    custom = run_json(capsys, "--params", "1B", "--tokens", "20B", "--peak-tflops", "100")
    assert custom["gpu"] == "custom" and custom["peak_flops_per_s"] == 100e12
    assert custom["cost_usd"] is None and custom["energy_kwh"] is None and custom["min_gpus"] is None
    tpu = run_json(capsys, "--params", "1B", "--tokens", "20B", "--gpu", "TPU-v5e")
    assert tpu["energy_kwh"] is None and tpu["cost_usd"] > 0


def test_human_table_is_grouped_and_shows_its_assumptions(capsys):
    assert main(["plan", "--params", "124M", "--tokens", "2.5B", "--gpu", "H100-SXM"]) == 0
    out = capsys.readouterr().out
    headings = ("Compute\n", "Time\n", "Money\n", "Energy and carbon\n", "Memory per GPU", "Compute-optimal")
    for heading in headings:
        assert heading in out
    for source in ("Llama 3 paper", "2026-05-07", "Google 2024 Environmental Report", "Ember", "Korthikanti",
                   "Hoffmann et al. 2022 eq. (10)"):
        assert source in out
    assert main(["plan", "--params", "124M", "--tokens", "2.5B", "--gpu", "A10G"]) == 0
    assert "as of 2024-06: AWS EC2 on-demand g5.xlarge" in capsys.readouterr().out


BAD = [
    (["--params", "abc"], "--params: cannot read 'abc'; use a number like 124M"),
    (["--params", "1B", "--tokens", "-5"], "--tokens: must be a positive number like 124M"),
    (["--params", "1B", "--gpu", "Z80"], "--gpu: unknown GPU 'Z80'; choose one of:"),
    (["--params", "1B", "--mfu", "1.5"], "--mfu: must be a fraction in (0, 1]"),
    (["--compute", "1e21", "--params", "1B", "--tokens", "2B"], "--compute: give --compute alone"),
    (["--params", "1B", "--law", "{missing}"], "--law: law file"),
    (["--params", "1B", "--law", "{malformed}"], "--law: law file"),
    (["--params", "1B", "--law", "{foreign}"], "is not a scaling law file"),
    (["--tokens", "2B"], "--params: give --params N"),
    (["--params", "1B", "--n-layer", "4"], "--n-layer/--d-model: give both"),
    (["--params", "1B", "--pue", "0.5"], "--pue: must be a number >= 1"),
    (["--params", "1B", "--gpu", "V100"], "--precision: V100 has no bf16 peak in the hardware table"),
    (["--params", "1B", "--region", "atlantis"], "--region: unknown region 'atlantis'; choose one of: world"),
    (["--params", "0.5"], "--params: a run of 0.5 parameters on 0.224 tokens is outside what the planner takes"),
    (["--params", "1B", "--tokens", "0.5"], "--tokens: a run of 1e+09 parameters on 0.5 tokens is outside"),
    (["--compute", "1"], "--compute: a run of 0.599 parameters on 0.278 tokens is outside"),
    (["--params", "1e30"], "--params: a run of 1e+30 parameters on 1.39e+36 tokens is outside what the planner "
                           "takes: 1 to 1e+15 parameters, at least 1 token"),
    (["--compute", "1e40"], "--compute: a run of 6.95e+17 parameters"),
    (["--params", "1B", "--gpu", ""], "--gpu: must not be empty"),
    (["--params", "1B", "--region", ""], "--region: must not be empty"),
    (["--params", "1B", "--law", ""], "--law: must not be empty"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_naming_the_flag(argv, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text('{"schema": "something-else"}')
    files = {"{missing}": str(tmp_path / "nope.json"), "{malformed}": str(tmp_path / "bad.json"),
             "{foreign}": str(tmp_path / "foreign.json")}
    assert main(["plan", *[files.get(a, a) for a in argv]]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling plan: error: ") and message in lines[0]


def test_memory_columns_stay_apart_for_the_largest_model(capsys):
    mem = run_json(capsys, "--params", "1e15")["memory_gb_per_gpu"]
    assert main(["plan", "--params", "1e15"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("weights"))
    table = lines[head + 1 : head + 5]
    assert len({len(line) for line in lines[head : head + 5]}) == 1  # every row as wide as the header
    for line, r in zip(table, (mem, mem["zero1"], mem["zero2"], mem["zero3"]), strict=True):
        keys = ("weights", "gradients", "optimizer", "activations", "total")
        assert [float(x) for x in line[16:].split()] == pytest.approx([r[k] for k in keys], abs=0.01)
    assert mem["total"] > 1e7  # 8 digits before the point: wider than the usual columns


def _plan_traced(*argv: str):
    """`scaling plan ARGV` in a process of its own, with Python's import trace on stderr."""
    return scaling("plan", *argv, timeout=60, python_flags=("-X", "importtime"))


def test_real_process_answers_without_importing_torch():
    proc = _plan_traced("--params", "124M", "--tokens", "2.5B", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["flops"] == pytest.approx(1.86e18)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line}
    assert "numpy" in imported  # the importtime trace is really there
    assert not any(name == "torch" or name.startswith("torch.") for name in imported)


def test_real_process_bad_input_exits_2_with_one_line():
    proc = _plan_traced("--params", "1B", "--mfu", "1.5")
    assert proc.returncode == 2 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "import time:" not in line]
    assert errors == ["scaling plan: error: --mfu: must be a fraction in (0, 1], such as 0.4; got 1.5"]


def test_absurd_sizes_print_as_numbers_a_reader_can_take_in(capsys):
    from scaling.units import format_size

    assert [format_size(x) for x in (124e6, 2.5e9, 999.9e6, 1500, 12, 3e16)] == \
        ["124M", "2.5B", "1B", "1.5K", "12", "3e+16"]
    assert main(["plan", "--params", "1e15", "--tokens", "1e30"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("1e+15 parameters on 1e+30 tokens")
    rows = {line[:28].strip(): line[28:45].strip() for line in out.splitlines() if line.startswith("  ")}
    assert rows["tokens per parameter"] == "1e+15"
    assert rows["wall clock"].endswith("e+25 days") and len(rows["wall clock"]) < 17


def test_the_table_prints_a_small_mfu_with_its_digits(capsys):
    """A CPU run fed back through --mfu or --measured-from can be a few thousandths: not '0.00'."""
    assert main(["plan", "--params", "1M", "--tokens", "20M", "--mfu", "0.003"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("MFU ")]
    assert row.split()[1] == "0.0030"
