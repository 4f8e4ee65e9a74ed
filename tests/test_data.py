"""Data preparation (gptcore.data and `scaling data prepare`) on the bundled corpus and small real subsets."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_env, scaling, start_scaling

from gptcore import data
from gptcore.data import BUNDLED_CORPUS, BUNDLED_CORPUS_DIR, open_dataset, prepare
from gptcore.errors import UserError
from gptcore.tokenizer import EOT_ID, gpt2


@pytest.fixture(scope="module")
def books(bundled_books) -> list[str]:
    """Six real books, the smallest of the first shard: enough documents for a split, quick to encode."""
    return sorted(bundled_books, key=len)[:6]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    return path


def documents_of(stream: np.ndarray, eot_id: int) -> list[np.ndarray]:
    """Split a token stream at its end-of-text tokens (every document ends with one)."""
    assert stream[-1] == eot_id
    ends = np.flatnonzero(stream == eot_id)
    return np.split(np.asarray(stream), ends + 1)[:-1]


# The bundled corpus, prepared once (conftest's prepared_data).


def test_bundled_corpus_is_complete_and_counted(prepared_data):
    ds = open_dataset(prepared_data)
    with open(BUNDLED_CORPUS_DIR / "MANIFEST.tsv") as f:
        manifest = list(csv.DictReader(f, delimiter="\t"))
    books = sum(int(row["books"]) for row in manifest)
    assert [p.name for p in BUNDLED_CORPUS] == [row["file"] for row in manifest]
    # Every book's tokens plus one end-of-text token per book, and nothing else.
    gpt2_tokens = sum(int(row["gpt2_tokens"]) for row in manifest)
    assert ds.meta["train_tokens"] + ds.meta["val_tokens"] == gpt2_tokens + books
    assert ds.meta["train_docs"] + ds.meta["val_docs"] == books
    assert ds.meta["val_docs"] == round(0.05 * books)
    assert (len(ds.train), len(ds.val)) == (ds.meta["train_tokens"], ds.meta["val_tokens"])
    assert ds.train.dtype == np.uint16 and not ds.train.flags.writeable
    assert [s["sha256"] for s in ds.meta["sources"]] == [row["sha256"] for row in manifest]
    assert ds.meta["schema"] == "gptcore-data/1" and ds.meta["dtype"] == "uint16"


def test_compact_vocabulary_is_exactly_the_train_tokens(prepared_data):
    ds = open_dataset(prepared_data)
    assert ds.meta["tokenizer"] == "gpt2-compact" == ds.tokenizer.name
    assert ds.vocab_size == ds.tokenizer.vocab_size == len(np.load(prepared_data / "vocab.npy"))
    counts = np.bincount(ds.train, minlength=ds.vocab_size)
    assert len(counts) == ds.vocab_size  # no id out of range
    assert counts[1] == 0 and np.all(counts[2:] > 0)  # no <unk> in train; every other id occurs there
    assert counts[0] == ds.meta["train_docs"] == np.count_nonzero(ds.train == ds.meta["eot_id"])
    assert np.count_nonzero(ds.val == 1) == ds.meta["val_unk_tokens"] > 0  # val-only tokens became <unk>


def test_documents_decode_to_the_original_books(prepared_data, bundled_books):
    ds = open_dataset(prepared_data)
    originals = set(bundled_books) | set(data.read_documents(BUNDLED_CORPUS[1]))
    train_docs = documents_of(ds.train, ds.meta["eot_id"])
    assert len(train_docs) == ds.meta["train_docs"]
    for doc in train_docs[:6]:  # whole books in train, decoded exactly (decoding all 4.6M tokens is slow)
        assert ds.tokenizer.decode(doc[:-1]) in originals


# Small real subsets: each option, each file kind, idempotence, atomicity, errors.


def test_plain_gpt2_vocabulary_keeps_gpt2_ids(tmp_path, books):
    src = write_jsonl(tmp_path / "books.jsonl", books)
    meta = prepare([src], tmp_path / "out", tokenizer="gpt2", val_fraction=0.3, seed=3, progress=False)
    ds = open_dataset(tmp_path / "out")
    assert not (tmp_path / "out" / "vocab.npy").exists()
    assert (meta["vocab_size"], meta["eot_id"], ds.tokenizer.name) == (50257, EOT_ID, "gpt2")
    docs = documents_of(ds.train, EOT_ID) + documents_of(ds.val, EOT_ID)
    expected = sorted(gpt2().encode_ordinary(t) for t in books)
    assert sorted(doc[:-1].tolist() for doc in docs) == expected
    assert (meta["train_docs"], meta["val_docs"]) == (4, 2)


def test_split_is_by_document_and_fixed_by_seed(tmp_path, books):
    src = write_jsonl(tmp_path / "books.jsonl", books)

    def val_books(seed: int, out: str) -> list[str]:
        prepare([src], tmp_path / out, tokenizer="gpt2", val_fraction=0.34, seed=seed, progress=False)
        val = open_dataset(tmp_path / out).val
        return [gpt2().decode(doc[:-1].tolist()) for doc in documents_of(val, EOT_ID)]

    first = val_books(0, "a")
    assert len(first) == 2 and set(first) <= set(books)
    assert val_books(0, "b") == first
    assert any(val_books(seed, f"s{seed}") != first for seed in (1, 2, 3))


def test_one_text_file_is_split_by_position(tmp_path, books):
    """A single document (tiny-shakespeare's one input.txt): the last val_fraction of its tokens is val."""
    src = tmp_path / "input.txt"
    src.write_text(books[0], encoding="utf-8")
    prepare([src], tmp_path / "out", tokenizer="gpt2", val_fraction=0.1, progress=False)
    ds = open_dataset(tmp_path / "out")
    ids = gpt2().encode_ordinary(books[0])
    n_val = round(len(ids) * 0.1)
    assert ds.train[:-1].tolist() == ids[:-n_val] and ds.val[:-1].tolist() == ids[-n_val:]


def test_reads_every_file_kind_and_directories_sorted(tmp_path, books):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text(books[0], encoding="utf-8")
    with gzip.open(src / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(books[1])
    write_jsonl(src / "c.jsonl", [books[2], "", books[3]])  # an empty document is skipped
    write_jsonl(src / "d.jsonl.gz", [books[4]])
    (src / "notes.md").write_text("not a source")
    (src / "c.jsonl").write_text((src / "c.jsonl").read_text() + "\n\n")  # blank lines are skipped
    meta = prepare([src], tmp_path / "out", tokenizer="gpt2", progress=False)
    assert [Path(s["path"]).name for s in meta["sources"]] == ["a.txt", "b.txt.gz", "c.jsonl", "d.jsonl.gz"]
    assert meta["train_docs"] + meta["val_docs"] == 5
    n_tokens = sum(len(gpt2().encode_ordinary(b)) + 1 for b in books[:5])
    assert meta["train_tokens"] + meta["val_tokens"] == n_tokens


def test_rerun_is_a_no_op_and_changes_rebuild(tmp_path, books, capsys):
    src = write_jsonl(tmp_path / "books.jsonl", books[:3])
    out = tmp_path / "out"
    first = prepare([src], out, progress=False)
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert prepare([src], out, progress=False) == first
    assert "up to date" in capsys.readouterr().err
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamps

    write_jsonl(src, books[:4])  # changed content
    assert prepare([src], out, progress=False)["train_docs"] == 3
    assert "rebuilding" in capsys.readouterr().err
    assert prepare([src], out, seed=1, progress=False)["seed"] == 1  # changed option
    prepare([src], out, tokenizer="gpt2", progress=False)
    assert sorted(f.name for f in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]  # old vocab gone
    assert open_dataset(out).vocab_size == 50257


def test_interrupted_rebuild_leaves_a_dir_that_is_refused(tmp_path, books, monkeypatch):
    src = write_jsonl(tmp_path / "books.jsonl", books[:3])
    out = tmp_path / "out"
    prepare([src], out, progress=False)
    replace = os.replace
    calls = []

    def dies_after_first_file(a, b):
        calls.append(b)
        if len(calls) > 1:
            raise KeyboardInterrupt  # stands for a kill between two renames
        replace(a, b)

    monkeypatch.setattr(data.os, "replace", dies_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        prepare([src], out, seed=5, progress=False)
    monkeypatch.undo()
    with pytest.raises(UserError, match="no meta.json"):
        open_dataset(out)
    assert not list(out.glob(".prepare-*"))  # the temp dir is cleaned up
    assert prepare([src], out, seed=5, progress=False)["seed"] == 5  # and a re-run completes it
    assert open_dataset(out).meta["seed"] == 5


def test_kill_during_tokenizing_keeps_the_old_dataset(tmp_path, books, monkeypatch):
    monkeypatch.setenv("SCALING_PROGRESS_EVERY_S", "0")  # without a terminal, a progress line at each update
    src = write_jsonl(tmp_path / "books.jsonl", books[:3])
    out = tmp_path / "out"
    old = prepare([src], out, progress=False)
    proc = start_scaling("data", "prepare", *map(str, BUNDLED_CORPUS), "--out", str(out), stderr=subprocess.PIPE,
                         text=True)
    assert "rebuilding" in proc.stderr.readline()
    assert "tokenizing" in proc.stderr.read(11)  # progress is up: it is reading the sources
    proc.kill()
    proc.wait()
    assert open_dataset(out).meta == old


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing", "missing: no such data dir"),
        (lambda d: d, "no meta.json"),
        (lambda d: (d / "meta.json").write_text('{"schema": "other/1"}') and d, "schema is 'other/1'"),
        (lambda d: (d / "meta.json").write_bytes(b"\x00garbage") and d, "meta.json is corrupt"),
    ],
)
def test_open_dataset_refuses_missing_and_foreign_dirs(tmp_path, setup, message):
    with pytest.raises(UserError, match=message) as e:
        open_dataset(setup(tmp_path))
    assert "\n" not in str(e.value)


def test_open_dataset_refuses_truncated_files(tmp_path, books):
    out = tmp_path / "out"
    prepare([write_jsonl(tmp_path / "b.jsonl", books[:3])], out, progress=False)
    with open(out / "train.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match="train.bin missing or not"):
        open_dataset(out)
    (out / "vocab.npy").write_bytes(b"junk")
    with pytest.raises(UserError):
        open_dataset(out)


def test_jsonl_line_without_text_names_file_and_line(tmp_path, books):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"text": books[0]}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: .*'text'"):
        prepare([src], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_refuses_to_overwrite_a_foreign_meta_json(tmp_path, books):
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta.json").write_text('{"schema": "something-else"}')
    with pytest.raises(UserError, match="refusing to overwrite"):
        prepare([write_jsonl(tmp_path / "b.jsonl", books[:2])], out, progress=False)
    assert (out / "meta.json").read_text() == '{"schema": "something-else"}'


def test_unknown_tokenizer_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="unknown tokenizer 'bert'"):
        prepare([tmp_path / "not-even-there.txt"], tmp_path / "out", tokenizer="bert", progress=False)
    assert not (tmp_path / "out").exists()


def test_refuses_an_out_that_is_a_file(tmp_path, books):
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(UserError, match="exists and is not a directory"):
        prepare([write_jsonl(tmp_path / "b.jsonl", books[:2])], tmp_path / "out", progress=False)
    assert (tmp_path / "out").read_text() == "keep me"


# The command line.


def test_cli_prepare_prints_a_summary(tmp_path, books, capsys):
    src = write_jsonl(tmp_path / "b.jsonl.gz", books[:4])
    out = tmp_path / "out"
    captured = scaling("data", "prepare", str(src), "--out", str(out), "--val-fraction", "0.25", "--seed=7",
                       capsys=capsys)
    assert captured.returncode == 0
    meta = open_dataset(out).meta
    assert (meta["seed"], meta["val_fraction"], meta["val_docs"]) == (7, 0.25, 1)
    (line,) = captured.stdout.splitlines()
    assert f"{meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens" in line
    assert f"gpt2-compact {meta['vocab_size']:,} ids" in line
    assert "tokenizing" not in captured.stderr  # without a terminal, a step this short shows no progress


def test_cli_in_a_real_process(tmp_path, books):
    src = write_jsonl(tmp_path / "b.jsonl", books[:3])
    argv = ["data", "prepare", str(src), "--out", str(tmp_path / "out")]
    done = scaling(*argv, timeout=120, env=cli_env(SCALING_PROGRESS_EVERY_S="0"))  # a progress line each update
    assert done.returncode == 0, done.stderr
    assert "train +" in done.stdout and "tokenizing" in done.stderr and "\r" not in done.stderr
    again = scaling(*argv, timeout=120)
    assert again.returncode == 0 and "up to date" in again.stderr
    missing = scaling(*argv[:2], str(tmp_path / "nope.txt"), *argv[3:], timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr


def write_bad_gzip(d: Path) -> Path:
    (d / "bad.jsonl.gz").write_bytes(b"this is not gzip data")
    return d / "bad.jsonl.gz"


def write_cut_off_gzip(d: Path) -> Path:
    (d / "cut.jsonl.gz").write_bytes(BUNDLED_CORPUS[0].read_bytes()[:200_000])  # a real shard, truncated
    return d / "cut.jsonl.gz"


def write_latin1(d: Path) -> Path:
    (d / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    return d / "latin1.txt"


def write_empty_docs(d: Path) -> Path:
    (d / "empty.txt").write_text("")
    return d / "empty.txt"


def write_two_docs(d: Path) -> Path:
    return write_jsonl(d / "two.jsonl", ["A first document.", "A second one."])


@pytest.mark.parametrize(
    "make_source, extra, message",
    [
        (lambda d: d / "nope.txt", [], "nope.txt: no such file or directory"),
        (write_empty_docs, [], "no non-empty document"),
        (lambda d: d, [], "directory has no"),
        (write_bad_gzip, [], "bad.jsonl.gz: unreadable gzip file"),
        (write_cut_off_gzip, [], "cut.jsonl.gz: unreadable gzip file"),
        (write_latin1, [], "latin1.txt: not UTF-8 text (invalid continuation byte at byte 3); if it is in another "
         "encoding, name it: data prepare --encoding latin-1"),
        (write_latin1, ["--encoding", "klingon"], "unknown text encoding 'klingon'"),
        (lambda d: write_jsonl(d / "one.jsonl", ["Hi"]), [], "too short to split"),
        (write_two_docs, ["--val-fraction", "0"], "val fraction must be"),
        (write_two_docs, ["--val-fraction", "1.5"], "val fraction must be"),
        (write_two_docs, ["--tokenizer", "bert"], "invalid choice: 'bert'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_source, extra, message):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = make_source(src_dir)
    code, _, err = scaling("data", "prepare", str(src), "--out", str(tmp_path / "out"), "--no-progress", *extra,
                           capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("scaling data prepare: error: ") and message in err, err
    assert not (tmp_path / "out" / "meta.json").exists()


def test_encoding_names_how_the_sources_are_read_and_is_recorded(tmp_path, capsys):
    """Latin-1 text, refused as UTF-8 above, reads with --encoding latin-1: the same tokens as its UTF-8 copy."""
    from gptcore.data import open_dataset

    text = "Le café au lait coûte trois francs. " * 40
    (tmp_path / "latin").mkdir()
    (tmp_path / "utf8").mkdir()
    for name, enc in (("latin", "latin-1"), ("utf8", "utf-8")):
        for i in range(4):
            (tmp_path / name / f"{i}.txt").write_bytes(f"{i}: {text}".encode(enc))
    code, _, err = scaling("data", "prepare", str(tmp_path / "latin"), "--out", str(tmp_path / "a"), "--encoding",
                           "latin-1", "--no-progress", "--tokenizer", "gpt2", capsys=capsys)
    assert code == 0, err
    assert scaling("data", "prepare", str(tmp_path / "utf8"), "--out", str(tmp_path / "b"), "--no-progress",
                   "--tokenizer", "gpt2", capsys=capsys).returncode == 0
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert list(a.train) == list(b.train) and list(a.val) == list(b.val)
    assert a.meta["encoding"] == "iso8859-1" and "encoding" not in b.meta
