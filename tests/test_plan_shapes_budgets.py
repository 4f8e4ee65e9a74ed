"""`scaling plan` on the model that will run: presets and shape flags, one shape rule with sweep and launch,
budgets in, time from the run's schedule, measured throughput, inference in the bill, and bad input."""

import json

import pytest
from helpers import scaling

from gptcore.config import GPTConfig, count_non_embedding_params, count_params
from scaling.law import CHINCHILLA, FittedLaw
from scaling.memory import GB, activation_memory
from scaling.planner import PlanRequest, plan
from scaling.planner_shape import ShapeFlags
from scaling.planner_time import Budget


def run_json(capsys, *argv) -> dict:
    ran = scaling("plan", *argv, "--json", capsys=capsys)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


# ----------------------------------------------------------------------------- shapes


def test_presets_have_their_exact_counts(capsys):
    seed = run_json(capsys, "--preset", "gpt2-124m", "--tokens", "10B")
    assert seed["params"] == 163_009_536 and seed["shape"]["how"] == "preset gpt2-124m"
    openai = run_json(capsys, "--preset", "gpt2-124m", "--tie-weights", "--qkv-bias", "--tokens", "10B")
    assert openai["params"] == 124_439_808 and openai["shape"]["tie_weights"]
    assert openai["flops"] == pytest.approx(6 * 124_439_808 * 10e9)


def test_shape_flags_reach_the_memory_and_json(capsys):
    p = run_json(capsys, "--n-layer", "32", "--d-model", "4096", "--n-head", "32", "--vocab", "32000",
                 "--ctx", "4096", "--tokens", "2T", "--micro-batch", "1", "--gpu", "A100-80GB")
    cfg = GPTConfig(vocab_size=32000, ctx=4096, n_layer=32, n_head=32, d_model=4096)
    assert (p["shape"]["n_head"], p["shape"]["head_dim"], p["shape"]["vocab_size"]) == (32, 128, 32000)
    assert p["params"] == count_params(cfg)
    mem = p["memory_gb_per_gpu"]
    assert mem["activations"] == pytest.approx(activation_memory(cfg, 1, "bf16").peak / GB)
    assert mem["activation_bytes"]["saved"] < mem["activation_bytes"]["peak"]
    eager = run_json(capsys, "--n-layer", "32", "--d-model", "4096", "--n-head", "32", "--vocab", "32000",
                     "--ctx", "4096", "--tokens", "2T", "--attention", "eager")
    full = run_json(capsys, "--n-layer", "32", "--d-model", "4096", "--n-head", "32", "--vocab", "32000",
                    "--ctx", "4096", "--tokens", "2T", "--recompute", "full")
    assert eager["memory_gb_per_gpu"]["activations"] > mem["activations"] > full["memory_gb_per_gpu"]["activations"]


def test_llmc_gpt2_fits_an_a100_without_recomputation(capsys):
    """The issue's case: GPT-2 124M at micro-batch 64 x 1024 in bf16, as llm.c trained it on 8 x A100-80GB.
    Eq. (1) with stored scores said 82 GB of activations and recomputation; llm-analysis says 31.6 GB."""
    p = run_json(capsys, "--preset", "gpt2-124m", "--tie-weights", "--qkv-bias", "--tokens", "10B",
                 "--micro-batch", "64", "--gpu", "A100-80GB")
    assert 25 < p["memory_gb_per_gpu"]["activations"] < 40
    assert p["min_gpus"] == 1 and "full" not in p["min_gpus_how"]


def test_plan_sweep_and_launch_derive_one_shape_from_n(tmp_path):
    """The demo's case: a total-count law, the data's compact vocabulary and the grid's ctx."""
    from scaling.launch import sizing
    from sweeps import grid as grids

    law = FittedLaw.of(CHINCHILLA)  # param_convention "total", as `scaling fit` writes by default
    vocab, ctx = 6_000, 256
    for n in (3.0e5, 1.2e6, 5e6):
        planned = plan(PlanRequest(params=n, tokens=1e8, shape=ShapeFlags(vocab_size=vocab, ctx=ctx)))
        launched = sizing.shape_for(law, n, vocab, ctx)
        one = grids.make_grid("final", params=[str(count_non_embedding_params(launched))], tokens=["1e8"], ctx=ctx,
                              seed=0, train={}, where="test")
        (swept,) = grids.resolve(one, vocab, "hash")
        s = planned.shape
        assert (s.n_layer, s.d_model, s.n_head, s.vocab_size, s.ctx) == \
            (launched.n_layer, launched.d_model, launched.n_head, vocab, ctx)
        assert swept.model == launched.to_dict()
    # GPT-2's vocabulary (the old plan's fixed one) would have given another, smaller shape for the same N.
    assert plan(PlanRequest(params=1.2e6, tokens=1e8)).shape.d_model < sizing.shape_for(law, 1.2e6, vocab, ctx).d_model


def test_kaplan_counts_non_embedding_parameters():
    p = plan(PlanRequest(params=1e8, tokens=1e9, law="kaplan"))
    assert p.law.param_convention == "non_embedding"
    assert p.shape.params_non_embedding == pytest.approx(1e8, rel=0.3)


# ----------------------------------------------------------------------------- budgets


def test_gpu_hours_buy_peak_times_mfu_and_the_law_sizes_them():
    p = plan(PlanRequest(budget=Budget(gpu_hours=2000), gpu="H100-SXM", mfu=0.4))
    flops = 2000 * 3600 * 989.4e12 * 0.4
    assert p.budget.flops == pytest.approx(flops, rel=1e-9) and p.flops == pytest.approx(flops, rel=1e-9)
    n, d = CHINCHILLA.compute_optimal(p.flops)
    assert (p.params, p.tokens) == (pytest.approx(float(n)), pytest.approx(float(d)))
    assert p.time.billed_gpu_hours == pytest.approx(2000, rel=1e-9)


def test_dollars_and_days_are_gpu_hours_too():
    usd = plan(PlanRequest(budget=Budget(usd=10_000), gpu="H100-SXM", price_per_gpu_hour=2.5))
    assert usd.budget.gpu_hours == pytest.approx(4000) and usd.cost_usd == pytest.approx(10_000, rel=1e-6)
    days = plan(PlanRequest(budget=Budget(days=3), gpus=64, gpu="H100-SXM"))
    assert days.budget.gpu_hours == pytest.approx(3 * 24 * 64)
    assert days.wall_clock_hours == pytest.approx(72, rel=1e-6)


def test_a_budget_pays_for_evaluation_checkpoints_and_goodput():
    bare = plan(PlanRequest(budget=Budget(days=3), gpus=64, law="epoch"))
    scheduled = plan(PlanRequest(budget=Budget(days=3), gpus=64, law="epoch", eval_every=1000, goodput=0.9))
    assert scheduled.wall_clock_hours == pytest.approx(72, rel=1e-6)
    assert scheduled.time.checkpoint_hours > 0 and scheduled.flops < 0.9 * bare.flops


def test_budget_with_params_sets_the_tokens():
    p = plan(PlanRequest(params=1e9, budget=Budget(gpu_hours=100), gpu="A100-80GB", mfu=0.5))
    assert p.params == 1e9 and p.tokens == pytest.approx(100 * 3600 * 312e12 * 0.5 / 6e9, rel=1e-9)


# ----------------------------------------------------------------------------- time


def test_evaluation_and_checkpoints_follow_the_trainer_schedule():
    cfg = GPTConfig(vocab_size=1000, ctx=128, n_layer=2, n_head=2, d_model=64)
    shape = ShapeFlags(n_layer=2, d_model=64, n_head=2, vocab_size=1000, ctx=128)
    n = count_params(cfg)
    req = dict(tokens=128 * 4 * 250, shape=shape, gpus=1, micro_batch=4, peak_tflops=1.0, mfu=0.5)
    p = plan(PlanRequest(**req, eval_every=100, eval_batches=5, checkpoint_every=60, checkpoint_gb_per_s=0.01))
    rate = 1e12 * 0.5
    assert p.time.steps == 250
    assert p.time.evaluations == 3  # steps 100, 200 and the last, 250
    assert p.time.eval_hours == pytest.approx(3 * 5 * 4 * 128 * 2 * n / rate / 3600)
    assert p.time.checkpoints == 5  # 60, 120, 180, 240, 250
    assert p.time.checkpoint_hours == pytest.approx(5 * 12 * n / 1e9 / 0.01 / 3600)
    total = p.time.train_hours + p.time.eval_hours + p.time.checkpoint_hours
    assert p.wall_clock_hours == pytest.approx(total)
    assert plan(PlanRequest(**req, eval_every=100, goodput=0.8)).wall_clock_hours > p.time.train_hours / 0.8
    # A final evaluation on more batches: the last of the 3 evaluations costs 20 batches, the others 5.
    final = plan(PlanRequest(**req, eval_every=100, eval_batches=5, final_eval_batches=20, checkpoint_every=60,
                             checkpoint_gb_per_s=0.01))
    assert final.time.evaluations == 3
    assert final.time.eval_hours == pytest.approx((2 * 5 + 20) * 4 * 128 * 2 * n / rate / 3600)
    assert "(5 batches, the last 20)" in final.time.schedule_source


def test_measured_mfu_from_an_earlier_sweep_sets_the_time(tmp_path):
    for i, (flops, mfu) in enumerate([(1e15, 0.2), (3e15, 0.4)]):
        run = tmp_path / "runs" / f"r{i}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"status": "completed", "flops": flops, "mfu": mfu,
                                                      "device": "cpu"}))
    (tmp_path / "runs" / "torn").mkdir()
    (tmp_path / "runs" / "torn" / "summary.json").write_text("{")
    shape = ShapeFlags(n_layer=4, d_model=256, vocab_size=4096, ctx=256)
    p = plan(PlanRequest(tokens=1e9, shape=shape, gpus=1, peak_tflops=2.0, measured_from=str(tmp_path)))
    trainer_mfu = 4e15 / (1e15 / 0.2 + 3e15 / 0.4)
    from gptcore.config import flops_per_token_with_attention

    cfg = GPTConfig(vocab_size=4096, ctx=256, n_layer=4, n_head=4, d_model=256)
    assert p.time.train_hours == pytest.approx(1e9 * flops_per_token_with_attention(cfg) / (trainer_mfu * 2e12) / 3600)
    assert "2 run(s)" in p.assumptions.mfu


def test_a_measured_cpu_mfu_is_said_with_its_digits(tmp_path):
    """A CPU run's MFU against its AMX peak is a few thousandths: said as the plan prints MFU, not '0.002'."""
    (tmp_path / "r0").mkdir()
    (tmp_path / "r0" / "summary.json").write_text(json.dumps({"status": "completed", "flops": 1e12,
                                                              "mfu": 0.00234, "device": "cpu"}))
    shape = ShapeFlags(n_layer=4, d_model=256, vocab_size=4096, ctx=256)
    p = plan(PlanRequest(tokens=1e9, shape=shape, gpus=1, peak_tflops=2.0, measured_from=str(tmp_path)))
    assert "1 run(s) on cpu, trainer MFU 0.0023 (" in p.assumptions.mfu, p.assumptions.mfu


# ----------------------------------------------------------------------------- inference


def test_serving_makes_the_cheapest_model_smaller_and_longer_trained():
    p = plan(PlanRequest(params=7e9, inference_tokens=2e12, law="chinchilla"))
    inf = p.inference
    assert inf.target_loss == pytest.approx(p.predicted_loss)
    o, c = inf.optimal, inf.chinchilla
    assert float(CHINCHILLA.loss(o.params, o.tokens)) == pytest.approx(inf.target_loss, abs=1e-9)
    assert o.params < c.params and o.tokens / o.params > c.tokens / c.params and o.total_flops < c.total_flops
    for factor in (0.97, 1.03):  # a minimum: any other N reaching the loss costs more in all
        from scaling.planner_inference import tokens_for_loss

        n = o.params * factor
        d = tokens_for_loss(CHINCHILLA.loss, n, inf.target_loss)
        assert 6 * n * d + 2 * n * 2e12 > o.total_flops
    # With nothing to serve, the cheapest model is Chinchilla's compute-optimal one for its compute.
    n, d = CHINCHILLA.compute_optimal(c.training_flops)
    assert c.params == pytest.approx(float(n), rel=1e-3) and c.tokens == pytest.approx(float(d), rel=1e-3)


def test_target_loss_is_the_users_when_given(capsys):
    p = run_json(capsys, "--params", "1B", "--inference-tokens", "1T", "--target-loss", "2.3", "--law", "epoch")
    assert p["inference"]["target_loss"] == 2.3 and p["inference"]["target_loss_source"] == "--target-loss"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "flag"), [
    (["--preset", "gpt9-1t"], "--preset"),
    (["--params", "1B", "--vocab", "0"], "--vocab"),
    (["--n-layer", "4", "--d-model", "256", "--n-head", "7"], "--n-head"),
    (["--params", "1B", "--n-head", "8"], "--n-head"),
    (["--budget-usd", "1000", "--peak-tflops", "100"], "--budget-usd"),
    (["--budget-usd", "1000", "--params", "1B", "--tokens", "20B"], "--budget-usd"),
    (["--gpu-hours", "-5"], "--gpu-hours"),
    (["--params", "1B", "--goodput", "1.5"], "--goodput"),
    (["--params", "1B", "--target-loss", "2"], "--target-loss"),
    (["--params", "1B", "--mfu", "0.4", "--measured-from", "."], "--measured-from"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, flag):
    ran = scaling("plan", *argv, capsys=capsys)
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and flag in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_inference_needs_the_law_named(capsys):
    ran = scaling("plan", "--params", "1B", "--inference-tokens", "1T", capsys=capsys)
    assert ran.returncode == 2 and "--law" in ran.stderr and ran.stderr.count("\n") == 1
    named = run_json(capsys, "--params", "1B", "--inference-tokens", "1T", "--law", "chinchilla")
    assert named["inference"]["optimal"]["params"] < 1e9


def test_gpu_cpu_plans_on_the_measured_peak(capsys, monkeypatch):
    from scaling.launch import planning

    monkeypatch.setattr(planning, "cpu_device", lambda precision=None: (precision or "fp32", 2.5e11))
    p = run_json(capsys, "--gpu", "cpu", "--params", "5M", "--tokens", "100M")
    assert p["gpu"] == "cpu (measured peak)" and p["peak_flops_per_s"] == 2.5e11 and p["gpus"] == 1
    assert p["precision"] == "fp32" and p["cost_usd"] is None
    ran = scaling("plan", "--gpu", "cpu", "--budget-usd", "100", capsys=capsys)
    assert ran.returncode == 2 and "no price" in ran.stderr


def test_a_cpu_run_is_planned_at_the_peak_of_the_precision_it_trains_in(monkeypatch):
    """A grid that fixes dtype = "fp32" on a CPU whose auto choice is bf16 (AMX) is planned against the
    fp32 peak and says fp32; "auto" keeps the trainer's choice."""
    import gptcore.hardware
    import gptcore.train
    from scaling.launch import planning

    peaks = {"fp32": 1e11, "bf16": 4e11}
    monkeypatch.setattr(gptcore.train, "resolve_device", lambda name: __import__("torch").device("cpu"))
    monkeypatch.setattr(gptcore.train, "resolve_dtype", lambda name, device: "bf16" if name == "auto" else name)
    monkeypatch.setattr(gptcore.hardware, "peak_flops_per_s", lambda device, precision: peaks[precision])
    assert planning.training_device(1, "fp32") == ("cpu", "fp32", 1e11)
    assert planning.training_device(1, "auto") == ("cpu", "bf16", 4e11)
    assert planning.training_device(1) == ("cpu", "bf16", 4e11)
