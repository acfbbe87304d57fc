"""What package code a stage runs, for the rules' code hashes.

Snakemake reruns a job when its ``params`` change, but it cannot see the Python modules
a ``shell:`` command imports. Each rule therefore passes a hash of the sources its stage
runs, and that set is derived here, not listed by hand (a hand-kept list missed
``eval/math_graders.py`` and ``sampling/vllm_backend.py``): the static import closure of
the stage's module — every ``import`` and ``from ... import`` of a ``pipeline`` module
anywhere in a file (lazy imports inside functions included, since a stage may take
them) and ``importlib.import_module("pipeline....")`` with a constant name — plus the
modules every ``python -m pipeline <stage>`` run imports (:data:`ENTRY_MODULES`) and
the module of the grader the config names (a registered name like ``math_verify``
resolves to ``pipeline.eval.math_graders``; ``module:function`` to that module), which
stages load by name at run time.

Import-light (``ast`` only): the Snakefile computes hashes before building the DAG.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parent
# Imported by every `python -m pipeline <stage>` run before the stage's own module.
ENTRY_MODULES = ("pipeline", "pipeline.__main__", "pipeline.cli", "pipeline.errors")


def module_file(name: str) -> Path | None:
    """The source file of package module ``name`` (a package's ``__init__.py``), or None."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    rel = Path(*name.split(".")[1:])
    for candidate in (ROOT / rel / "__init__.py", (ROOT / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c`` (importing a module imports its packages)."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=None)
def imports_of(path: Path) -> frozenset[str]:
    """The ``pipeline`` modules that the file at ``path`` may import."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pipeline.x import y`: y may be a module of its own
            found.update(f"{target}.{a.name}" for a in node.names if module_file(f"{target}.{a.name}"))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return frozenset(m for n in found for m in _with_parents(n) if module_file(m) is not None)


def closure(*modules: str) -> list[Path]:
    """Source files of ``modules`` and of everything they may import, sorted."""
    seen: set[str] = set()
    todo = [m for name in modules for m in _with_parents(name)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            raise ValueError(f"no module {name!r} in the {PACKAGE} package")
        seen.add(name)
        todo.extend(imports_of(path) - seen)
    return sorted(module_file(n) for n in seen)


def stage_module(stage: str) -> str:
    """The module that ``python -m pipeline <stage>`` runs."""
    from pipeline.cli import STAGES

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
    return STAGES[stage][0]


def grader_files(grader: str) -> list[Path]:
    """Sources behind the grader named in config: the closure of its module for a package
    module (registered names such as ``math_verify`` resolve to one), the module's own file
    for a user's ``module:function``."""
    from pipeline.eval.grading import GRADERS

    registered = GRADERS.get(grader)
    if registered is not None and not isinstance(registered, str):
        return closure(registered.__module__)
    spec_string = registered if isinstance(registered, str) else grader
    if ":" not in spec_string:
        return []
    module = spec_string.partition(":")[0]
    if module_file(module) is not None:
        return closure(module)
    spec = importlib.util.find_spec(module)
    return [Path(spec.origin)] if spec is not None and spec.origin and Path(spec.origin).is_file() else []


def stage_files(stage: str, grader: str | None = None) -> list[Path]:
    files = set(closure(*ENTRY_MODULES, stage_module(stage)))
    if grader:
        files.update(grader_files(grader))
    return sorted(files)


def stage_code_hash(stage: str, grader: str | None = None, extra_files=()) -> str:
    """Hash of every source the stage runs (and of ``extra_files``, e.g. reference data)."""
    digest = hashlib.sha256()
    for f in [*stage_files(stage, grader), *map(Path, extra_files)]:
        label = str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name
        digest.update(label.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
