"""gptcore.pretrained against the reference implementation (transformers' GPT2LMHeadModel), offline.

The reference model is randomly initialised and saved here, in every layout `load` reads: safetensors,
sharded safetensors and pytorch_model.bin. Then `scaling generate` and `scaling eval` on it, and bad input.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from gptcore.config import GPTConfig, count_params  # noqa: E402
from gptcore.data import open_dataset, prepare  # noqa: E402
from gptcore.errors import UserError  # noqa: E402
from gptcore.model import GPT  # noqa: E402
from gptcore.pretrained import hf_config_to_gpt, load, open_checkpoint, save_hf  # noqa: E402
from gptcore.tokenizer import gpt2  # noqa: E402
from scaling.cli import main  # noqa: E402

CTX = 64
TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--ctx", "32", "--batch-size", "4",
        "--warmup", "2", "--eval-batches", "2", "--sample-tokens", "0", "--threads", "1", "--dtype", "fp32",
        "--device", "cpu", "--no-progress", "--json"]


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """(the reference model in eval mode, {layout: its directory}). Weights drawn wider than GPT-2's init
    (std 0.1) so that greedy decoding has clear winners, not float-noise ties."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=CTX, initializer_range=0.1)
    ref = transformers.GPT2LMHeadModel(config).eval()
    root = tmp_path_factory.mktemp("hf")
    dirs = {"safetensors": root / "safetensors", "sharded": root / "sharded", "bin": root / "bin"}
    ref.save_pretrained(dirs["safetensors"])
    ref.save_pretrained(dirs["sharded"], max_shard_size="1MB")
    dirs["bin"].mkdir()
    shutil.copy(dirs["safetensors"] / "config.json", dirs["bin"])
    torch.save(ref.state_dict(), dirs["bin"] / "pytorch_model.bin")  # the legacy layout, tied head included
    assert (dirs["sharded"] / "model.safetensors.index.json").is_file()
    return ref, dirs


@pytest.fixture(scope="session")
def small_text(tmp_path_factory, bundled_books) -> Path:
    path = tmp_path_factory.mktemp("text") / "book.txt"
    path.write_text(bundled_books[0][20_000:32_000])  # 12 KB of real English, past the licence header
    return path


@pytest.fixture(scope="session")
def full_data(small_text, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "full"
    prepare([small_text], out, tokenizer="gpt2", val_fraction=0.2, progress=False)
    return out


@pytest.fixture(scope="session")
def compact_data(small_text, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "compact"
    prepare([small_text], out, tokenizer="gpt2-compact", val_fraction=0.2, progress=False)
    return out


def _ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 50257, (2, n), generator=torch.Generator().manual_seed(seed))


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"scaling {argv[0]}: error:"), err
    assert match in err, err


def _files(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- load against the reference


@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_load_gives_the_reference_logits(reference, layout):
    ref, dirs = reference
    model = load(dirs[layout])
    assert not model.training
    assert model.cfg.tie_weights and model.cfg.qkv_bias and model.cfg.ctx == CTX
    ids = _ids(CTX)
    with torch.no_grad():
        want = ref(ids).logits
        got = model(ids)
    assert (got - want).abs().max().item() < 1e-4


def test_a_weights_file_loads_as_its_directory(reference):
    ref, dirs = reference
    ids = _ids(16)
    with torch.no_grad():
        got = load(dirs["safetensors"] / "model.safetensors")(ids)
        assert (got - ref(ids).logits).abs().max().item() < 1e-4


def test_greedy_generation_matches_the_reference(reference):
    ref, dirs = reference
    model = load(dirs["safetensors"])
    prompt = _ids(8, seed=2)
    want = ref.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=50256,
                        attention_mask=torch.ones_like(prompt))
    got = model.generate(prompt, 20, temperature=0)
    assert got.shape == (2, 28)
    assert torch.equal(got, want)


def test_scaling_generate_on_huggingface_weights_uses_the_full_gpt2_tokenizer(reference, capsys):
    ref, dirs = reference
    prompt = "The old man"
    ids = torch.tensor([gpt2().encode_ordinary(prompt)])
    want = ref.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=50256,
                        attention_mask=torch.ones_like(ids))
    assert main(["generate", "--checkpoint", str(dirs["bin"]), "--prompt", prompt, "--max-new-tokens", "20",
                 "--temperature", "0", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == gpt2().decode(want[0].tolist()) + "\n"


def test_a_model_name_is_found_in_the_models_cache(reference, tmp_path, monkeypatch, capsys):
    _, dirs = reference
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(dirs["safetensors"], tmp_path / "cache" / "scaling" / "models" / "tiny-gpt2")
    assert open_checkpoint("tiny-gpt2").kind == "huggingface"
    _one_line_error(capsys, ["generate", "--checkpoint", "gpt2"],
                    f"huggingface-cli download gpt2 --local-dir {tmp_path / 'cache' / 'scaling' / 'models' / 'gpt2'}")


@pytest.mark.parametrize("tie, qkv_bias", [(True, True), (False, False)])
def test_save_hf_round_trips(tmp_path, tie, qkv_bias):
    torch.manual_seed(3)
    model = GPT(GPTConfig(ctx=CTX, n_layer=2, n_head=4, d_model=32, tie_weights=tie, qkv_bias=qkv_bias)).eval()
    out = save_hf(model, tmp_path / "hf")
    ref = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    back = load(out)
    ids = _ids(CTX)
    with torch.no_grad():
        want = model(ids)
        assert (ref(ids).logits - want).abs().max().item() < 1e-4
        assert (back(ids) - want).abs().max().item() < 1e-6
    assert back.cfg.tie_weights == tie


# ----------------------------------------------------------------------------- scaling eval


def _reference_loss(ref, tokens: np.ndarray, windows: int) -> float:
    losses = []
    with torch.no_grad():
        for i in range(windows):
            block = torch.from_numpy(tokens[i * CTX: (i + 1) * CTX + 1].astype(np.int64))[None]
            logits = ref(block[:, :-1]).logits
            losses.append(F.cross_entropy(logits[0], block[0, 1:]).item())
    return float(np.mean(losses))


def test_eval_matches_the_reference_loss_on_the_same_windows(reference, full_data, capsys):
    ref, dirs = reference
    val = open_dataset(full_data).val
    windows = (len(val) - 1) // CTX
    assert windows >= 5
    assert main(["eval", "--checkpoint", str(dirs["safetensors"]), "--data", str(full_data), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["windows"] == windows and result["tokens"] == windows * CTX and result["ctx"] == CTX
    assert abs(result["loss"] - _reference_loss(ref, np.asarray(val), windows)) < 1e-4
    assert abs(result["perplexity"] - np.exp(result["loss"])) < 1e-6 * result["perplexity"]

    assert main(["eval", "--checkpoint", str(dirs["bin"]), "--data", str(full_data), "--tokens", "200",
                 "--json", "--device", "cpu"]) == 0
    first3 = json.loads(capsys.readouterr().out)
    assert first3["windows"] == 3  # 200 tokens hold 3 whole windows of 64
    assert abs(first3["loss"] - _reference_loss(ref, np.asarray(val), 3)) < 1e-4


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="session")
def compact_run(compact_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "compact"
    assert main(["train", "--data", str(compact_data), "--out", str(out), *TINY, "--max-steps", "1"]) == 0
    return out


def test_vocabulary_mismatch_names_the_tokenizer_to_prepare_with(reference, compact_run, full_data,
                                                                  compact_data, capsys):
    _, dirs = reference
    before = _files(full_data.parent) | _files(compact_data.parent)
    _one_line_error(capsys, ["eval", "--checkpoint", str(dirs["safetensors"]), "--data", str(compact_data)],
                    "full-vocabulary (gpt2) model but")
    _one_line_error(capsys, ["eval", "--checkpoint", str(dirs["safetensors"]), "--data", str(compact_data)],
                    "--tokenizer gpt2`")
    _one_line_error(capsys, ["eval", "--checkpoint", str(compact_run), "--data", str(full_data)],
                    "--tokenizer gpt2-compact")
    assert _files(full_data.parent) | _files(compact_data.parent) == before


def test_a_compact_run_evaluates_on_its_own_data(compact_run, compact_data, capsys):
    assert main(["eval", "--checkpoint", str(compact_run), "--data", str(compact_data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ctx"] == 32


def test_a_directory_without_a_config(tmp_path, full_data, capsys):
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "empty"), "--data", str(full_data)],
                    "has no config.json (a Hugging Face model directory) and no ckpt.pt")
    assert list(tmp_path.rglob("*")) == [tmp_path / "empty"]


def test_a_safetensors_file_with_a_missing_tensor(reference, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    _, dirs = reference
    bad = tmp_path / "bad"
    shutil.copytree(dirs["safetensors"], bad)
    tensors = load_file(bad / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    save_file(tensors, bad / "model.safetensors")
    before = _files(tmp_path)
    _one_line_error(capsys, ["generate", "--checkpoint", str(bad)], "lacks the tensor 'h.1.mlp.c_fc.weight'")
    assert _files(tmp_path) == before


class _CreatesAFile:
    """Unpickled, it would call open(path, "w"): a stand-in for code a malicious checkpoint runs."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_bin_holding_a_pickle_of_other_things_is_refused_not_executed(reference, tmp_path, capsys, writer):
    _, dirs = reference
    bad, marker = tmp_path / "bad", tmp_path / "pwned"
    bad.mkdir()
    shutil.copy(dirs["bin"] / "config.json", bad)
    payload = {"transformer.wte.weight": _CreatesAFile(marker)}
    with open(bad / "pytorch_model.bin", "wb") as f:
        torch.save(payload, f) if writer == "torch.save" else pickle.dump(payload, f)
    before = _files(tmp_path)
    _one_line_error(capsys, ["generate", "--checkpoint", str(bad)], "not a state dict of tensors")
    assert not marker.exists()
    assert _files(tmp_path) == before


def test_a_bin_of_plain_values_is_not_a_state_dict(reference, tmp_path):
    _, dirs = reference
    shutil.copytree(dirs["bin"], tmp_path / "bad")
    torch.save({"transformer.wte.weight": [1, 2, 3]}, tmp_path / "bad" / "pytorch_model.bin")
    with pytest.raises(UserError, match="not a state dict of tensors"):
        load(tmp_path / "bad")


REFUSED = {
    "model_type": ("gpt_neo", "model_type is 'gpt_neo'"),
    "add_cross_attention": (True, "add_cross_attention is true"),
    "activation_function": ("relu", "activation_function 'relu'"),
    "scale_attn_by_inverse_layer_idx": (True, "scale_attn_by_inverse_layer_idx is true"),
    "reorder_and_upcast_attn": (True, "reorder_and_upcast_attn is true"),
    "scale_attn_weights": (False, "scale_attn_weights is false"),
    "layer_norm_epsilon": (1e-6, "layer_norm_epsilon 1e-06"),
    "n_inner": (100, "n_inner 100"),
}


@pytest.mark.parametrize("key", REFUSED)
def test_an_architecture_gpt_cannot_represent_is_refused(reference, key):
    _, dirs = reference
    hf = json.loads((dirs["safetensors"] / "config.json").read_text())
    assert hf_config_to_gpt(hf, Path("config.json")).n_layer == 2
    value, match = REFUSED[key]
    with pytest.raises(UserError, match="cannot represent") as e:
        hf_config_to_gpt({**hf, key: value}, Path("config.json"))
    assert match in str(e.value) and "\n" not in str(e.value)


def test_an_unrepresentable_architecture_through_the_cli(reference, tmp_path, capsys):
    _, dirs = reference
    bad = tmp_path / "bad"
    shutil.copytree(dirs["safetensors"], bad)
    hf = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**hf, "add_cross_attention": True}))
    _one_line_error(capsys, ["generate", "--checkpoint", str(bad)], "add_cross_attention is true")


# ----------------------------------------------------------------------------- scaling fit --reference


@pytest.fixture(scope="session")
def sweep_dir(full_data, tmp_path_factory) -> Path:
    """A sweep directory: a synthetic isoFLOP table (sweep.csv) and a sweep.json naming full_data."""
    from test_fit import isoflop_sweep

    out = tmp_path_factory.mktemp("sweep")
    df = isoflop_sweep()
    df["status"] = "completed"
    df.to_csv(out / "sweep.csv", index=False)
    (out / "sweep.json").write_text(json.dumps({"grid": "synthetic", "data": str(full_data)}))
    return out


def _fit(capsys, *argv) -> dict:
    assert main(["fit", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fit_reference_is_evaluated_on_the_sweeps_data_and_not_fitted(reference, sweep_dir, full_data, compact_run,
                                                                     compact_data, tmp_path, capsys):
    _, dirs = reference
    plain = _fit(capsys, str(sweep_dir))
    assert main(["eval", "--checkpoint", str(dirs["safetensors"]), "--data", str(full_data), "--json"]) == 0
    eval_loss = json.loads(capsys.readouterr().out)["loss"]
    with_ref = _fit(capsys, str(sweep_dir), "--reference", f"tiny={dirs['safetensors']}", "--plot",
                    str(tmp_path / "plots"))
    for key in ("E", "A", "B", "alpha", "beta", "n_points", "objective"):
        assert with_ref[key] == plain[key]  # the reference never enters the fit
    (ref,) = with_ref["references"]
    assert ref["name"] == "tiny" and ref["loss"] == eval_loss
    assert ref["params"] == count_params(load(dirs["safetensors"]).cfg)
    assert ref["tokens"] is None and ref["flops"] is None and "law_loss" not in ref
    assert (tmp_path / "plots" / "loss_vs_compute.png").is_file()

    # A scaling run knows its tokens: it gets a compute and the law's loss at its N and D.
    run_ref = _fit(capsys, str(sweep_dir), "--reference", f"run={compact_run}", "--reference-data",
                   str(compact_data))["references"][0]
    summary = json.loads((compact_run / "summary.json").read_text())
    assert run_ref["tokens"] == summary["tokens"] and run_ref["params"] == summary["params"]
    assert run_ref["flops"] == pytest.approx(summary["flops"])
    assert np.isfinite(run_ref["law_loss"])


def test_fit_reference_refusals_are_one_line(reference, sweep_dir, compact_run, tmp_path, capsys):
    _, dirs = reference
    _one_line_error(capsys, ["fit", str(sweep_dir), "--reference", "tiny"], "give NAME=PATH")
    _one_line_error(capsys, ["fit", str(sweep_dir / "sweep.csv"), "--reference", f"tiny={dirs['bin']}"],
                    "give --reference-data DIR")
    _one_line_error(capsys, ["fit", str(sweep_dir), "--reference", f"run={compact_run}", "--plot",
                             str(tmp_path / "plots")], "--tokenizer gpt2-compact")
    assert not (tmp_path / "plots").exists()


def test_references_are_drawn_as_markers_or_levels():
    from matplotlib.figure import Figure

    from analysis.plots import Reference, draw_references

    ax = Figure().subplots()
    draw_references(ax, [Reference("gpt2", 3.3, 1.2e8), Reference("run", 5.0, 1e6, 1e8, 6e14)], "flops")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["gpt2 (reference; compute unknown)", "run (reference)"]
    assert [tuple(o.get_offsets()[0]) for o in ax.collections] == [(6e14, 5.0)]
    assert ax.lines[0].get_ydata()[0] == 3.3


# ----------------------------------------------------------------------------- scaling train --init-from

CONTINUE = ["--batch-size", "4", "--warmup", "1", "--lr", "3e-3", "--eval-batches", "2", "--sample-tokens", "0",
            "--threads", "1", "--dtype", "fp32", "--device", "cpu", "--no-progress", "--json"]


def _eval_loss(capsys, checkpoint, data) -> float:
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["loss"]


def test_init_from_then_0_steps_keeps_the_weights_and_more_steps_lower_the_loss(reference, full_data, tmp_path,
                                                                                capsys):
    import hashlib

    _, dirs = reference
    start = _eval_loss(capsys, dirs["safetensors"], full_data)
    sha = hashlib.sha256((dirs["safetensors"] / "model.safetensors").read_bytes()).hexdigest()
    base = ["train", "--init-from", str(dirs["safetensors"]), "--data", str(full_data), *CONTINUE]
    assert main([*base, "--out", str(tmp_path / "zero"), "--max-steps", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 0 and summary["init_from_sha256"] == sha
    assert json.loads((tmp_path / "zero" / "config.json").read_text())["train"]["init_from_sha256"] == sha
    assert _eval_loss(capsys, tmp_path / "zero", full_data) == start  # exactly the loaded weights

    assert main([*base, "--out", str(tmp_path / "more"), "--max-steps", "4"]) == 0
    capsys.readouterr()
    assert _eval_loss(capsys, tmp_path / "more", full_data) < start - 0.1


def test_an_init_from_run_resumes_like_any_run(reference, full_data, tmp_path):
    from gptcore.config import TrainConfig
    from gptcore.train import train

    _, dirs = reference

    def cfg(out: Path) -> TrainConfig:
        return TrainConfig(model=load(dirs["bin"]).cfg, data=str(full_data), out=str(out), batch_size=4,
                           max_steps=4, warmup=1, lr=3e-3, eval_every=2, eval_batches=2, sample_tokens=0,
                           threads=1, dtype="fp32", device="cpu", progress=False, init_from=str(dirs["bin"]))

    whole = train(cfg(tmp_path / "whole"), log=lambda msg: None)
    assert train(cfg(tmp_path / "split"), log=lambda msg: None, on_eval=lambda step, loss: step == 2).status \
        == "stopped"
    resumed = train(cfg(tmp_path / "split"), log=lambda msg: None)
    assert resumed.status == "completed" and resumed.final_val_loss == whole.final_val_loss
    assert resumed.init_from_sha256 == whole.init_from_sha256 is not None


def test_init_from_with_a_conflicting_shape_flag(reference, full_data, tmp_path, capsys):
    _, dirs = reference
    _one_line_error(capsys, ["train", "--init-from", str(dirs["safetensors"]), "--data", str(full_data),
                             "--out", str(tmp_path / "run"), "--n-layer", "3", *CONTINUE],
                    "n_layer 3 (the checkpoint's is 2); leave the shape flags out")
    assert not (tmp_path / "run").exists()


def test_init_from_data_of_another_vocabulary(compact_run, full_data, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--init-from", str(compact_run), "--data", str(full_data),
                             "--out", str(tmp_path / "run"), *CONTINUE], "--tokenizer gpt2-compact")
    assert not (tmp_path / "run").exists()


def test_zero_steps_needs_init_from(full_data, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--data", str(full_data), "--out", str(tmp_path / "run"), *TINY,
                             "--max-steps", "0"], "max_steps must be")
