"""Sweep grids as data: the presets in sweeps/grids/*.toml, a user's TOML file, or flags.

A grid names target sizes (non-embedding parameters) and either token budgets (every size x every budget)
or compute budgets (an isoFLOP grid). `resolve` turns it into RunSpecs: the shape from
`gptcore.config.shape_for_params`, the learning rate, batch size and warmup from `sweeps.hparams`.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gptcore.config import (
    TRAIN_RULES,
    count_non_embedding_params,
    count_params,
    flops_per_token_with_attention,
    shape_for_params,
    train_setting_error,
)
from gptcore.errors import UserError
from scaling.units import format_size, parse_size
from sweeps import hparams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).with_name("grids")
GRID_KEYS = {"description", "params", "tokens", "compute", "sizes", "ctx", "seed", "train"}


# The trainer settings a grid may fix for every run (the rest come from the rules in sweeps.hparams): every
# TrainConfig setting but those a sweep sets itself (the budget, seed, threads, progress and sampling) and
# grad_accum (a grid's batch_size is a step's sequences). Values are checked by gptcore.config.TRAIN_RULES,
# the trainer's own validator, when the grid is read, not when every run fails.
SET_BY_THE_SWEEP = frozenset({"tokens", "max_steps", "seed", "threads", "progress", "sample_tokens", "grad_accum"})
TRAIN_KEYS = frozenset(TRAIN_RULES) - SET_BY_THE_SWEEP
ISOFLOP_SPAN = 16.0  # an isoFLOP grid spans sizes from centre/4 to centre*4
TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022: compute-optimal D is about 20 N; the isoFLOP grids centre there


@dataclass(frozen=True)
class Grid:
    """What a grid file says, before it is turned into runs."""

    name: str
    params: tuple[float, ...]
    tokens: tuple[float, ...] = ()
    compute: tuple[float, ...] = ()
    sizes: int = 5
    ctx: int = 256
    seed: int = 0
    train: dict = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything its training depends on. `config_hash` identifies it."""

    run_id: str
    model: dict  # GPTConfig.to_dict()
    tokens: int
    lr: float
    lr_source: str  # tuned | lr-law | default-rule | grid
    batch_size: int  # sequences per step
    warmup: int  # steps
    seed: int
    params: int
    non_embedding_params: int
    flops: float  # tokens x flops_per_token_with_attention (the trainer's PaLM convention)
    data_hash: str  # which data (sweeps.provenance.data_hash): other data is another config
    train: dict = field(default_factory=dict)  # grid-fixed trainer settings

    @property
    def config_hash(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k not in ("run_id",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self) | {"config_hash": self.config_hash}

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(**{k: v for k, v in d.items() if k != "config_hash"})


# ----------------------------------------------------------------------------- reading grids


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_grid(name_or_path: str) -> Grid:
    """A preset by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"grid file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a TOML grid file (not UTF-8 text)") from None
        return grid_from_toml(text, name=path.stem, where=str(path))
    if name_or_path not in preset_names():
        raise UserError(
            f"unknown grid {name_or_path!r}; choose a preset ({', '.join(preset_names())}) or give a .toml file"
        )
    return grid_from_toml(
        (PRESET_DIR / f"{name_or_path}.toml").read_text(), name=name_or_path, where=f"preset {name_or_path}"
    )


def grid_from_toml(text: str, name: str, where: str) -> Grid:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML: {e}") from None
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(GRID_KEYS))}"
        )
    return make_grid(
        name,
        params=raw.get("params"),
        tokens=raw.get("tokens"),
        compute=raw.get("compute"),
        sizes=raw.get("sizes", 5),
        ctx=raw.get("ctx", 256),
        seed=raw.get("seed", 0),
        train=raw.get("train", {}),
        description=str(raw.get("description", "")),
        where=where,
    )


def _size_list(value, what: str, where: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        value = str(value).split(",")
    if not isinstance(value, list) or not value or any(isinstance(v, bool) for v in value):
        raise UserError(f'{where}: {what} must be a non-empty list of sizes such as ["1M", "2M"]')
    return tuple(parse_size(v, f"{where}: {what}") for v in value)


def _check_train(train: object, where: str) -> dict:
    """The [train] table, every key known and every value of the type and in the range the trainer takes."""
    if not isinstance(train, dict):
        raise UserError(f"{where}: [train] must be a table")
    unknown = set(train) - TRAIN_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown [train] key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(TRAIN_KEYS))}"
        )
    for key, value in train.items():
        error = train_setting_error(key, value)
        if error:
            raise UserError(f"{where}: [train] {error}")
    return dict(train)


def _positive_int(value, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def make_grid(
    name: str,
    params=None,
    tokens=None,
    compute=None,
    sizes=5,
    ctx=256,
    seed=0,
    train: dict | None = None,
    description: str = "",
    where: str = "flags",
) -> Grid:
    """Check a grid's fields: sizes x tokens, or isoFLOP compute budgets (params optional)."""
    p, t, c = (
        _size_list(params, "params", where),
        _size_list(tokens, "tokens", where),
        _size_list(compute, "compute", where),
    )
    if bool(t) == bool(c):
        raise UserError(f"{where}: give either tokens (with params) or compute (an isoFLOP grid), not both or neither")
    if t and not p:
        raise UserError(f"{where}: a tokens grid needs params (target non-embedding sizes)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return Grid(
        name=name,
        params=p,
        tokens=t,
        compute=c,
        sizes=_positive_int(sizes, "sizes", where),
        ctx=_positive_int(ctx, "ctx", where),
        seed=seed,
        train=_check_train({} if train is None else train, where),
        description=description,
    )


def grid_to_dict(grid: Grid) -> dict:
    """The grid as JSON-ready data, so a sweep directory records exactly what it ran (flags and files too)."""
    return asdict(grid)


def grid_to_toml(grid: Grid) -> str:
    """The grid as a grid file that load_grid reads back to the same grid (the name is the file's stem)."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # a JSON string is a TOML basic string

    lines = [f"description = {value(grid.description)}", f"ctx = {grid.ctx}", f"seed = {grid.seed}",
             f"sizes = {grid.sizes}"]
    lines += [f"{k} = {value(getattr(grid, k))}" for k in ("params", "tokens", "compute") if getattr(grid, k)]
    lines += ["", "[train]", *(f"{k} = {value(v)}" for k, v in sorted(grid.train.items()))]
    return "\n".join(lines) + "\n"


def grid_from_dict(d: dict, where: str) -> Grid:
    """The inverse of grid_to_dict, checked as a grid file is."""
    try:
        return make_grid(d["name"], params=list(d["params"]) or None, tokens=list(d["tokens"]) or None,
                         compute=list(d["compute"]) or None, sizes=d["sizes"], ctx=d["ctx"], seed=d["seed"],
                         train=d["train"], description=d["description"], where=where)
    except (KeyError, TypeError) as e:
        raise UserError(f"{where}: not a recorded grid ({e})") from None


def training_record(grid: Grid, vocab_size: int, data_hash: str, lr_law: hparams.LRLaw | None) -> dict:
    """Every setting that changes a run's loss, as a sweep records it for its runs (sweep.json, then the law
    file) and a launch for its final run: the learning-rate, batch and warmup rules (a grid's fixed value
    where it sets one), ctx, the data's vocabulary and identity, and the grid's other trainer settings."""
    train = dict(grid.train)
    lr_rule = {"rule": "grid", "lr": train.pop("lr")} if "lr" in train else hparams.lr_rule_record(lr_law)
    batch = train.pop("batch_size", None)
    warmup = train.pop("warmup", None)
    return {"lr_rule": lr_rule,
            "batch_rule": hparams.BATCH_RULE if batch is None else f"grid: batch_size = {batch}",
            "warmup_rule": hparams.WARMUP_RULE if warmup is None else f"grid: warmup = {warmup}",
            "ctx": grid.ctx, "seed": grid.seed, "vocab_size": vocab_size, "data_hash": data_hash, "train": train}


def training_differences(sweep: dict, final: dict) -> list[dict]:
    """Where a final run's training record differs from its sweep's: [{setting, sweep, final_run}]."""
    def same(k: str) -> bool:
        if k == "lr_rule":  # one LR law is one file's bytes, wherever the file lies
            return hparams.lr_rule_key(sweep.get(k)) == hparams.lr_rule_key(final.get(k))
        return sweep.get(k) == final.get(k)

    return [{"setting": k, "sweep": sweep.get(k), "final_run": final.get(k)}
            for k in sorted(sweep.keys() | final.keys()) if not same(k)]


def describe_difference(d: dict) -> str:
    """One difference of training_differences, as the launch's plan and its report say it."""
    if d["setting"] == "lr_rule":
        return (f"learning-rate rule: sweep {hparams.describe_lr_rule(d['sweep'])}, final run "
                f"{hparams.describe_lr_rule(d['final_run'])}")
    return f"{d['setting']}: sweep {d['sweep']!r}, final run {d['final_run']!r}"


# ----------------------------------------------------------------------------- grid -> runs


def _isoflop_targets(flops: float, sizes: int) -> list[float]:
    """`sizes` target sizes spread evenly in log space around N with C = 6 N (20 N)."""
    centre = math.sqrt(flops / (6.0 * TOKENS_PER_PARAM))
    if sizes == 1:
        return [centre]
    lo = math.log(centre / math.sqrt(ISOFLOP_SPAN))
    step = math.log(ISOFLOP_SPAN) / (sizes - 1)
    return [math.exp(lo + i * step) for i in range(sizes)]


def resolve(grid: Grid, vocab_size: int, data_hash: str, lr_law: hparams.LRLaw | None = None) -> list[RunSpec]:
    """The runs of a grid on data with `vocab_size` token ids, in order of compute, duplicates dropped."""
    pairs: list[tuple[float, float | None, float | None]] = []  # (target params, tokens, compute)
    if grid.tokens:
        pairs = [(n, d, None) for n in grid.params for d in grid.tokens]
    else:
        for c in grid.compute:
            targets = list(grid.params) or _isoflop_targets(c, grid.sizes)
            pairs += [(n, None, c) for n in targets]
    runs: dict[str, RunSpec] = {}
    for target, tokens, compute in pairs:
        cfg = shape_for_params(target, vocab_size=vocab_size, ctx=grid.ctx)
        fpt = flops_per_token_with_attention(cfg)
        n_tokens = int(round(tokens if tokens is not None else compute / fpt))
        if n_tokens < grid.ctx:
            raise UserError(
                f"grid {grid.name}: {format_size(n_tokens)} tokens is less than one sequence "
                f"of ctx {grid.ctx} for a {format_size(target)} model; raise the budget"
            )
        spec = _make_run(cfg, n_tokens, fpt, grid, data_hash, lr_law)
        runs.setdefault(spec.run_id, spec)
    return sorted(runs.values(), key=lambda s: (s.flops, s.non_embedding_params))


def _make_run(cfg, tokens: int, fpt: float, grid: Grid, data_hash: str, lr_law: hparams.LRLaw | None) -> RunSpec:
    n_ne = count_non_embedding_params(cfg)
    flops = tokens * fpt
    train = dict(grid.train)
    if "lr" in train:
        lr, lr_source = float(train.pop("lr")), "grid"
    elif lr_law is not None:
        lr, lr_source = lr_law.lr(n_ne)
    else:
        lr, lr_source = hparams.default_lr(n_ne), "default-rule"
    batch = int(train.pop("batch_size", hparams.batch_size_for(flops, tokens, cfg.ctx)))
    warmup = int(train.pop("warmup", hparams.warmup_steps_for(n_ne, tokens, batch * cfg.ctx)))
    run_id = f"L{cfg.n_layer}-d{cfg.d_model}-D{format_size(tokens)}"
    return RunSpec(
        run_id=run_id,
        model=cfg.to_dict(),
        tokens=tokens,
        lr=lr,
        lr_source=lr_source,
        batch_size=batch,
        warmup=warmup,
        seed=grid.seed,
        params=count_params(cfg),
        non_embedding_params=n_ne,
        flops=flops,
        data_hash=data_hash,
        train=train,
    )
