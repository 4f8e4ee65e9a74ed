"""The packages' layers, written down and enforced: imports point down (or across), never up.

Every module of gptcore/, scaling/, sweeps/ and analysis/ is read with ast, and every import in it, at
module level or inside a function, is checked against LAYERS. README.md's "Layout" section is this table
in words. A module the table does not place fails too, so a new module is placed on purpose.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gptcore", "scaling", "sweeps", "analysis")

# Lowest first. A module may import its own layer and the layers below it. Patterns are fnmatch patterns
# on dotted module names ("scaling.fit.*" is every module under scaling/fit/).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("trainer", ("gptcore", "gptcore.*")),
    # The law, fit and planner maths: numpy and scipy, never torch (`scaling plan` starts in well under a
    # second). plan_render and planner_table draw plans as text: pure formatting over the planner's result.
    ("maths", ("scaling", "scaling.law", "scaling.fit", "scaling.fit.*", "scaling.planner", "scaling.planner_*",
               "scaling.plan_render", "scaling.memory", "scaling.parallelism", "scaling.carbon", "scaling.units",
               "scaling.formulas")),
    ("sweeps", ("sweeps", "sweeps.*")),
    ("analysis", ("analysis", "analysis.*")),
    ("cli", ("scaling.cli", "scaling.__main__", "scaling.commands", "scaling.commands.*", "scaling.launch",
             "scaling.launch.*")),
]
NO_TORCH = "maths"  # the layer that must not load torch, directly or through what it imports

# Upward imports known and being removed elsewhere: (importer, imported). Empty it as they go.
ALLOWED_UP: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a project module, or the top-level name of another package ("torch", "numpy")
    line: int
    module_level: bool


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the layer that holds `module`, or None when the table does not place it."""
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    return None


def module_names(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted name -> file for every module of the packages under root (a package is its __init__.py)."""
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _resolve(module: str, name: str | None, known: dict[str, Path]) -> str:
    """The project module an import loads (`from scaling import formulas` is scaling.formulas), else its top."""
    if name is not None and f"{module}.{name}" in known:
        return f"{module}.{name}"
    return module if module in known or module.split(".")[0] in PACKAGES else module.split(".")[0]


def imports_of(module: str, source: str, known: dict[str, Path], is_package: bool = False) -> list[Import]:
    """Every import in one module's source, each resolved to the module it loads."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):  # an import under a module-level if/try still runs at import time
        if isinstance(node, (ast.If, ast.Try)) and id(node) in top:
            top |= {id(child) for child in ast.walk(node)}
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [_resolve(a.name, None, known) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level-1 packages
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            targets = [_resolve(base, a.name, known) for a in node.names]
        else:
            continue
        found += [Import(module, t, node.lineno, id(node) in top) for t in dict.fromkeys(targets)]
    return found


def all_imports(root: Path = ROOT, packages=PACKAGES) -> tuple[dict[str, Path], list[Import]]:
    known = module_names(root, packages)
    found = []
    for module, path in known.items():
        found += imports_of(module, path.read_text(encoding="utf-8"), known, path.name == "__init__.py")
    return known, found


def layer_violations(root: Path = ROOT, packages=PACKAGES, allowed=frozenset()) -> list[str]:
    """One line per module the table does not place, and per import that points up a layer."""
    known, found = all_imports(root, packages)
    problems = [f"{m}: not in any layer of LAYERS" for m in known if layer_of(m) is None]
    for imp in found:
        if imp.target not in known or (imp.importer, imp.target) in allowed:
            continue
        low, high = layer_of(imp.importer), layer_of(imp.target)
        if low is not None and high is not None and high > low:
            problems.append(f"{imp.importer}:{imp.line} imports {imp.target} "
                            f"({LAYERS[low][0]} may not import {LAYERS[high][0]})")
    return problems


def torch_violations(root: Path = ROOT, packages=PACKAGES) -> list[str]:
    """Modules of the NO_TORCH layer that load torch: by their own imports anywhere in them, or through the
    module-level imports of a project module they import (which run as soon as it is imported)."""
    known, found = all_imports(root, packages)
    at_import: dict[str, set[str]] = {}
    for imp in found:
        if imp.module_level:
            at_import.setdefault(imp.importer, set()).add(imp.target)
    no_torch = next(i for i, (name, _) in enumerate(LAYERS) if name == NO_TORCH)
    problems = []
    for imp in found:
        if layer_of(imp.importer) != no_torch:
            continue
        chain, seen, frontier = {imp.target: [imp.target]}, {imp.target}, [imp.target]
        while frontier:
            current = frontier.pop()
            if current == "torch":
                problems.append(f"{imp.importer}:{imp.line} loads torch via {' -> '.join(chain[current])}")
                break
            for nxt in at_import.get(current, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    chain[nxt] = chain[current] + [nxt]
                    frontier.append(nxt)
    return problems


# ----------------------------------------------------------------------------- the repository


def test_no_import_points_up_a_layer():
    assert layer_violations(allowed=ALLOWED_UP) == []


def test_the_law_and_planner_maths_never_load_torch():
    assert torch_violations() == []


def test_every_allowed_upward_import_still_exists():
    """An allow-list entry whose import is gone must go too, so the list only shrinks."""
    _, found = all_imports()
    present = {(imp.importer, imp.target) for imp in found}
    gone = sorted(ALLOWED_UP - present)
    assert gone == [], f"remove {gone} from ALLOWED_UP in tests/test_layers.py: the import is gone"


def test_every_layer_pattern_places_a_module():
    """A pattern that matches nothing is a typo or a module that moved: the table would drift from the code."""
    known = module_names(ROOT)
    unused = [p for _, patterns in LAYERS for p in patterns if not any(fnmatch.fnmatchcase(m, p) for m in known)]
    assert unused == []


def test_readme_layout_names_every_layer_and_package():
    text = (ROOT / "README.md").read_text()
    assert "## Layout" in text
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    for _, patterns in LAYERS:
        for p in patterns:
            if not p.endswith(".*"):
                assert f"`{p.replace('.', '/')}" in layout or f"`{p}`" in layout, p


# ----------------------------------------------------------------------------- the checker itself


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


BASE = {
    "gptcore/__init__.py": "", "gptcore/config.py": "import math\n", "gptcore/model.py": "import torch\n",
    "scaling/__init__.py": "", "scaling/law.py": "from gptcore.config import math\n",
    "sweeps/__init__.py": "", "sweeps/grid.py": "from scaling import law\n",
    "analysis/__init__.py": "", "analysis/report.py": "import sweeps.grid\n",
    "scaling/cli.py": "from analysis.report import x\n",
}


def test_the_checker_passes_a_clean_tree(tmp_path):
    root = _tree(tmp_path, BASE)
    assert layer_violations(root) == [] and torch_violations(root) == []


@pytest.mark.parametrize("planted, expected", [
    ({"gptcore/config.py": "def f():\n    from scaling.law import x\n"},
     "gptcore.config:2 imports scaling.law (trainer may not import maths)"),
    ({"scaling/law.py": "from sweeps import grid\n"},
     "scaling.law:1 imports sweeps.grid (maths may not import sweeps)"),
    ({"analysis/report.py": "try:\n    import scaling.cli\nexcept ImportError:\n    pass\n"},
     "analysis.report:2 imports scaling.cli (analysis may not import cli)"),
    ({"sweeps/grid.py": "from . import x\nfrom ..analysis import report\n"},
     "sweeps.grid:2 imports analysis.report (sweeps may not import analysis)"),
    ({"scaling/new_module.py": ""}, "scaling.new_module: not in any layer of LAYERS"),
])
def test_the_checker_catches_a_planted_upward_import(tmp_path, planted, expected):
    root = _tree(tmp_path, {**BASE, **planted})
    assert expected in layer_violations(root)
    assert [p for p in layer_violations(root) if p != expected] == []


@pytest.mark.parametrize("planted, expected", [
    ({"scaling/law.py": "def f():\n    import torch.nn\n"}, "scaling.law:2 loads torch via torch"),
    ({"scaling/law.py": "from gptcore import model\n"}, "scaling.law:1 loads torch via gptcore.model -> torch"),
    ({"scaling/law.py": "import gptcore.config\n", "gptcore/config.py": "import gptcore.model\n"},
     "scaling.law:1 loads torch via gptcore.config -> gptcore.model -> torch"),
])
def test_the_checker_catches_torch_in_the_maths(tmp_path, planted, expected):
    assert torch_violations(_tree(tmp_path, {**BASE, **planted})) == [expected]


def test_a_torch_import_inside_a_function_of_an_imported_module_does_not_count(tmp_path):
    """Only what runs when the maths imports a module counts; a function it never calls loads nothing."""
    root = _tree(tmp_path, {**BASE, "gptcore/config.py": "def peak():\n    import torch\n"})
    assert torch_violations(root) == []
