"""Tokenised datasets: `prepare` turns text files into memory-mapped token files; `open_dataset` reads them.

A prepared data dir holds
- `train.bin`, `val.bin`: raw little-endian uint16 token ids (np.memmap), every document followed by the
  end-of-text token;
- `vocab.npy` (compact vocabulary only): the gpt2 id of each dense id (`CompactVocab.gpt2_ids`);
- `meta.json`, written last: schema, tokenizer, vocab_size, token and document counts, split options and the
  sha256 of every source. A dir without it is incomplete (an interrupted prepare) and is refused.

Sources: `.txt` (one file = one document), `.txt.gz`, `.jsonl` and `.jsonl.gz` (one line = one document,
field "text"); a directory stands for its files of those kinds, sorted by name. Empty documents are skipped.

Split: documents get a permutation seeded by `seed`; the first max(1, round(n_docs * val_fraction)) go to
val, the rest to train, both in permuted order. A single document (one .txt file, such as tiny-shakespeare)
is split by position instead, as nanoGPT does: its last round(n_tokens * val_fraction) tokens are val.

Vocabulary: "gpt2" keeps the 50,257 gpt2 ids. "gpt2-compact" remaps to the dense ids of a CompactVocab
built from the train split, by its one rule (gptcore/tokenizer.py): dense 0 is <|endoftext|>, dense 1 is
<unk>, then every gpt2 id that occurs in train, in increasing gpt2-id order; a gpt2 id seen only in val
becomes <unk>. Losses are comparable only between datasets with the same vocabulary.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gptcore.errors import UserError
from gptcore.fileio import atomic_write_json
from gptcore.progress import progress_bar
from gptcore.tokenizer import EOT_ID, RANKS_SHA256, CompactVocab, Tokenizer, gpt2

SCHEMA = "gptcore-data/1"
TOKENIZERS = ("gpt2-compact", "gpt2")
DTYPE = np.dtype("<u2")  # little-endian uint16: every gpt2 id (< 50,257) fits
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")
BUNDLED_CORPUS_DIR = Path(__file__).parent / "assets" / "gutenberg-mini"
BUNDLED_CORPUS: list[Path] = sorted(BUNDLED_CORPUS_DIR.glob("*.jsonl.gz"))

FILES = ("train.bin", "val.bin", "vocab.npy", "meta.json")  # meta.json last: it marks the dir complete
CHARS_PER_THREAD = 1_000_000  # text per thread in one encode_ordinary_batch call: bounds memory
REQUIRED_META = (
    "schema", "tokenizer", "vocab_size", "dtype", "eot_id", "train_tokens", "val_tokens", "train_docs",
    "val_docs", "val_fraction", "seed", "sources", "created_by",
)


@dataclass(frozen=True)
class Dataset:
    """A prepared data dir, opened: token memmaps, metadata and the tokenizer of its vocabulary."""

    path: Path
    train: np.memmap
    val: np.memmap
    meta: dict
    tokenizer: Tokenizer

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dir written by `prepare`; a missing, incomplete, foreign or corrupt one is a UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such data dir (make one with `scaling data prepare SRC... --out DIR`)")
    meta = _read_meta(path)
    if meta is None:
        raise UserError(f"{path} is not a data dir: no meta.json (an interrupted prepare leaves none)")
    bad = _check_complete(path, meta)
    if bad:
        raise UserError(f"{path} is not a valid prepared data dir: {bad}")
    compact = None
    if meta["tokenizer"] == "gpt2-compact":
        compact = CompactVocab(np.load(path / "vocab.npy", allow_pickle=False)[2:])
    return Dataset(
        path=path,
        train=np.memmap(path / "train.bin", dtype=DTYPE, mode="r"),
        val=np.memmap(path / "val.bin", dtype=DTYPE, mode="r"),
        meta=meta,
        tokenizer=Tokenizer(compact),
    )


def unigram_nats(ds: Dataset) -> float:
    """The validation split's cross-entropy, in nats per token, under the training split's token frequencies
    (add-one smoothed): the loss of a model that knows how often each token occurs and nothing else. A run
    that ends above it has not learned even that: it is still in the early transient of training, where loss
    does not yet fall as a power law in N and D (on the demo's tiny grid, loss falls faster with each doubling
    of tokens, not slower, as a power law would)."""
    counts = np.bincount(np.asarray(ds.train), minlength=ds.vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts) - np.log(counts.sum())
    return float(-log_p[np.asarray(ds.val)].mean())


def prepare(
    sources: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer: str = "gpt2-compact",
    val_fraction: float = 0.05,
    seed: int = 0,
    progress: bool = True,
    encoding: str = "utf-8",
) -> dict:
    """Tokenise `sources` into `out_dir` (see the module doc) and return its meta; a no-op when up to date."""
    start = time.perf_counter()
    if tokenizer not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {tokenizer!r} (choose from {', '.join(TOKENIZERS)})")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    files = resolve_sources(sources)
    source_info = [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files]
    options = {"tokenizer": tokenizer, "val_fraction": val_fraction, "seed": seed}
    if encoding != "utf-8":  # recorded only when not the default, so data prepared before --encoding is current
        options["encoding"] = encoding

    old = _read_meta(out_dir) if out_dir.is_dir() else None
    if old is not None and old.get("schema") != SCHEMA:
        raise UserError(f"{out_dir}/meta.json is not gptcore data; refusing to overwrite it")
    if old is not None and _same_inputs(old, source_info, options) and not _check_complete(out_dir, old):
        print(f"data prepare: {out_dir} is up to date (same sources and options)", file=sys.stderr)
        return old
    if old is not None:
        print(f"data prepare: sources or options differ from {out_dir}'s; rebuilding", file=sys.stderr)

    docs = tokenize_files(files, progress, encoding)
    train_docs, val_docs = split_documents(docs, val_fraction, seed)
    train, val = _join(train_docs), _join(val_docs)

    meta = {"schema": SCHEMA, **options}
    vocab = None
    if tokenizer == "gpt2-compact":
        seen = np.zeros(gpt2().n_vocab, dtype=bool)
        for doc in train_docs:  # per document: no int64 copy of the whole split
            seen[doc] = True
        vocab = CompactVocab(np.flatnonzero(seen))
        to_dense = vocab.to_dense.astype(DTYPE)
        train, val = to_dense[train], to_dense[val]
        meta.update(vocab_size=len(vocab), eot_id=0, unk_id=CompactVocab.UNK,
                    val_unk_tokens=int(np.count_nonzero(val == CompactVocab.UNK)))
    else:
        meta.update(vocab_size=gpt2().n_vocab, eot_id=EOT_ID, unk_id=None, val_unk_tokens=0)
    meta.update(
        dtype="uint16",
        train_tokens=len(train),
        val_tokens=len(val),
        train_docs=len(train_docs),
        val_docs=len(val_docs),
        sources=source_info,
        gpt2_ranks_sha256=RANKS_SHA256,
        prepare_seconds=round(time.perf_counter() - start, 3),
        created_by=f"gptcore.data.prepare (scaling {_version()})",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        _write(out_dir, train, val, vocab, meta)
    except OSError as e:
        raise UserError(f"cannot write {out_dir}: {e.strerror or e}") from None
    return meta


def resolve_sources(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """The files that `sources` name: files as given, directories as their files of known kinds, sorted."""
    files: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
            if not found:
                raise UserError(f"{src}: directory has no {', '.join(SUFFIXES)} files")
            files += found
        elif src.is_file():
            if not src.name.endswith(SUFFIXES):
                raise UserError(f"{src}: unsupported file type (want {', '.join(SUFFIXES)})")
            files.append(src)
        else:
            raise UserError(f"{src}: no such file or directory")
    if not files:
        raise UserError("no sources given")
    unique = list(dict.fromkeys(f.resolve() for f in files))  # a file named twice is read once
    return unique


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def read_documents(path: Path, raw: BinaryIO | None = None, encoding: str = "utf-8") -> Iterator[str]:
    """The non-empty documents of one source file, read through `raw` (its open binary file) if given."""
    if raw is None:
        with open(path, "rb") as raw:
            yield from read_documents(path, raw, encoding)
        return
    name = path.name
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if name.endswith(".gz") else raw
    try:
        if name.endswith((".txt", ".txt.gz")):
            text = stream.read().decode(encoding)
            if text:
                yield text
            return
        for line_no, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            line = line.decode(encoding)  # outside the try: a decoding error gets the --encoding hint below
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
                text = None
            if not isinstance(text, str):
                raise UserError(f"{path}:{line_no}: not a JSON object with a string field 'text'")
            if text:
                yield text
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not {encoding.upper()} text ({e.reason} at byte {e.start}); if it is in another "
                        "encoding, name it: data prepare --encoding latin-1 (or cp1252, utf-16, ...)") from None
    except (EOFError, OSError) as e:  # gzip.BadGzipFile is an OSError; a cut-off gzip an EOFError
        kind = "gzip file" if name.endswith(".gz") else "file"
        raise UserError(f"{path}: unreadable {kind} ({e or type(e).__name__})") from None


def tokenize_files(files: list[Path], progress: bool = True, encoding: str = "utf-8") -> list[np.ndarray]:
    """gpt2 ids (uint16, no separators) of every document in `files`, in order, encoded on all cores."""
    enc = gpt2()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    docs: list[np.ndarray] = []
    total_bytes = sum(f.stat().st_size for f in files)
    start = time.perf_counter()
    with progress_bar(total_bytes, unit="B", desc="tokenizing", enabled=progress, unit_scale=True) as bar:
        bytes_before, n_tokens = 0, 0  # source bytes of the files already read; tokens so far
        for path in files:
            with open(path, "rb") as raw:
                for batch in _batches(read_documents(path, raw, encoding), CHARS_PER_THREAD * threads):
                    for ids in enc.encode_ordinary_batch(batch, num_threads=threads):
                        docs.append(np.array(ids, dtype=DTYPE))
                        n_tokens += len(ids)
                    rate = n_tokens / max(time.perf_counter() - start, 1e-9)
                    bar.set_postfix_str(f"{n_tokens:,} tokens, {rate:,.0f} tokens/s", refresh=False)
                    bar.update(bytes_before + raw.tell() - bar.n)
            bytes_before += path.stat().st_size
            bar.update(bytes_before - bar.n)
    return docs


def split_documents(docs: list[np.ndarray], val_fraction: float, seed: int):
    """(train, val) lists of documents: a seeded permutation, the first max(1, round(n*f)) to val."""
    if not docs:
        raise UserError("the sources hold no non-empty document")
    if len(docs) == 1:  # one text: its tail is val (see the module docstring)
        n_val = max(1, round(len(docs[0]) * val_fraction))
        if n_val >= len(docs[0]):
            raise UserError(f"one document of {len(docs[0])} token(s) is too short to split")
        return [docs[0][:-n_val]], [docs[0][-n_val:]]
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = max(1, round(len(docs) * val_fraction))
    if n_val >= len(docs):
        raise UserError(f"{len(docs)} document(s) with val fraction {val_fraction} leave none for training")
    return [docs[i] for i in order[n_val:]], [docs[i] for i in order[:n_val]]


def _batches(texts: Iterator[str], max_chars: int) -> Iterator[list[str]]:
    batch, chars = [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _join(docs: list[np.ndarray]) -> np.ndarray:
    """One token stream: each document followed by <|endoftext|>."""
    eot = np.array([EOT_ID], dtype=DTYPE)
    return np.concatenate([part for doc in docs for part in (doc, eot)])


def _read_meta(path: Path) -> dict | None:
    """The parsed meta.json of `path`, None if absent; unparseable is a UserError."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}/meta.json is corrupt ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}/meta.json is corrupt (not a JSON object)")
    return meta


def _check_complete(path: Path, meta: dict) -> str | None:
    """Why `path` with `meta` is not a complete dataset of this schema, or None if it is."""
    if meta.get("schema") != SCHEMA:
        return f"meta.json schema is {meta.get('schema')!r}, expected {SCHEMA!r}"
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        return f"meta.json lacks {', '.join(missing)}"
    if meta["tokenizer"] not in TOKENIZERS or meta["dtype"] != "uint16":
        return f"unknown tokenizer {meta['tokenizer']!r} or dtype {meta['dtype']!r}"
    for split in ("train", "val"):
        f = path / f"{split}.bin"
        want = meta[f"{split}_tokens"] * DTYPE.itemsize
        if not f.is_file() or f.stat().st_size != want or want == 0:
            return f"{f.name} missing or not {want:,} bytes"
    if meta["tokenizer"] == "gpt2-compact":
        try:
            ids = np.load(path / "vocab.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            return f"vocab.npy unreadable ({e})"
        if ids.dtype != np.int64 or len(ids) != meta["vocab_size"] or len(ids) < 2:
            return f"vocab.npy does not hold {meta['vocab_size']} int64 ids"
        if not np.array_equal(CompactVocab(ids[2:]).gpt2_ids, ids):
            return "vocab.npy does not follow the compact-vocabulary rule"
    elif meta["vocab_size"] != gpt2().n_vocab:
        return f"vocab_size {meta['vocab_size']} is not gpt2's {gpt2().n_vocab}"
    return None


def _same_inputs(meta: dict, source_info: list[dict], options: dict) -> bool:
    """Whether `meta` was made from sources with these contents (in this order) and these options."""
    old_sources = [(s.get("sha256"), s.get("bytes")) for s in meta.get("sources", [])]
    new_sources = [(s["sha256"], s["bytes"]) for s in source_info]
    return (
        old_sources == new_sources
        and all(meta.get(k) == v for k, v in options.items())
        and meta.get("gpt2_ranks_sha256") == RANKS_SHA256
    )


def _write(out_dir: Path, train: np.ndarray, val: np.ndarray, vocab: CompactVocab | None, meta: dict) -> None:
    """Write the dataset files into a temp dir inside `out_dir`, then move them in with meta.json last.

    The old meta.json goes first, so a kill at any point leaves a dir that open_dataset refuses
    (no meta.json) or the complete new one; files in `out_dir` that are not ours are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".prepare-"))
    try:
        for name, arr in (("train.bin", train), ("val.bin", val)):
            _write_synced(tmp / name, lambda f, arr=arr: arr.astype(DTYPE, copy=False).tofile(f))
        if vocab is not None:
            _write_synced(tmp / "vocab.npy", lambda f: np.save(f, vocab.gpt2_ids, allow_pickle=False))
        (out_dir / "meta.json").unlink(missing_ok=True)
        for name in FILES[:-1]:
            if (tmp / name).exists():
                os.replace(tmp / name, out_dir / name)
            else:
                (out_dir / name).unlink(missing_ok=True)  # e.g. a vocab.npy left from a compact build
        atomic_write_json(out_dir / "meta.json", meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _version() -> str:
    try:
        return metadata.version("scaling")
    except metadata.PackageNotFoundError:
        return "unknown"
