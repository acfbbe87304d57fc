"""The ``analysis:`` config section: defaults (from the config schema), compiled patterns, checks.

Import-light (no torch, no pandas): the Snakefile's config check calls
:func:`check_analysis_config` before any job starts, so a bad regex or an unknown method
stops the run with one line naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import PipelineError
from pipeline.schema import validate_section


def schema_defaults() -> dict:
    """The ``analysis`` section with every default filled in (the schema is the one source)."""
    return fill_defaults({})


def fill_defaults(section: dict | None) -> dict:
    """A copy of ``section`` validated against the schema's ``analysis`` entry, defaults filled."""
    return validate_section("analysis", section)


def term_pattern(term: str) -> str:
    """A regex for one word-list entry: whole words where the term starts/ends with a word
    character (``so`` never matches inside ``also``), the literal text otherwise (``+``)."""
    if not term:
        raise ValueError("empty term")
    body = re.escape(term)
    if re.match(r"\w", term[0]):
        body = r"(?<!\w)" + body
    if re.match(r"\w", term[-1]):
        body = body + r"(?!\w)"
    return body


def _compile(pattern: str, key: str, flags: int) -> re.Pattern:
    try:
        return re.compile(pattern, flags)
    except re.error as err:
        raise PipelineError(f"config key '{key}': invalid regular expression {pattern!r} ({err})") from None


@dataclass(frozen=True)
class Patterns:
    """The compiled text patterns of an analysis: categories, segmentation, reflection."""

    categories: dict[str, re.Pattern]  # category -> alternation of its terms
    segment: re.Pattern  # separator between sentences / steps
    reflective: dict[str, re.Pattern]  # name -> pattern searched in a segment
    word_entropy: str  # "first" (the word's first token) or "mean" (all its tokens)
    pivotal: tuple[str, ...] = ()  # the categories counted together as "pivotal" (counts, Fig. 8)


def compile_patterns(cfg: dict) -> Patterns:
    flags = 0 if cfg.get("case_sensitive", False) else re.IGNORECASE
    categories = {}
    for name, terms in cfg["categories"].items():
        if not terms:
            raise PipelineError(f"config key 'analysis.categories.{name}': needs at least one term")
        # Longest first, so that "double-check" wins over "check" at the same position.
        alternation = "|".join(term_pattern(t) for t in sorted(set(terms), key=lambda t: (-len(t), t)))
        categories[name] = _compile(alternation, f"analysis.categories.{name}", flags)
    segment = _compile(cfg["segment_pattern"], "analysis.segment_pattern", 0)
    if segment.search("") is not None:
        raise PipelineError(f"config key 'analysis.segment_pattern': {cfg['segment_pattern']!r} matches the empty string")
    reflective = {name: _compile(p, f"analysis.reflective_patterns.{name}", flags)
                  for name, p in cfg["reflective_patterns"].items()}
    pivotal = cfg.get("pivotal")
    pivotal = tuple(categories) if pivotal is None else tuple(pivotal)
    unknown = [c for c in pivotal if c not in categories]
    if unknown:
        raise PipelineError(f"config key 'analysis.pivotal': {unknown[0]!r} is not a category (known: {', '.join(categories)})")
    # Tables and figures list the pivotal categories first (config slices reach the jobs as
    # JSON with sorted keys, so the written order of the categories is not kept).
    categories = {name: categories[name] for name in [*pivotal, *(c for c in categories if c not in pivotal)]}
    return Patterns(categories, segment, reflective, cfg.get("word_entropy", "first"), pivotal)


def check_analysis_config(config: dict) -> None:
    """Cross-field checks of ``analysis`` (after schema validation): known suite, methods and
    seeds, compilable patterns. Raises PipelineError naming the key."""
    cfg = config["analysis"]
    for key in ("suite",):
        if cfg[key] is not None and cfg[key] not in config["suites"]:
            raise PipelineError(f"config key 'analysis.{key}': unknown suite {cfg[key]!r} (known: {', '.join(config['suites'])})")
    ck = cfg["checkpoints"]["suite"]
    if ck is not None and ck not in config["suites"]:
        raise PipelineError(f"config key 'analysis.checkpoints.suite': unknown suite {ck!r} (known: {', '.join(config['suites'])})")
    for m in cfg["methods"] or []:
        if m not in config["methods"]:
            raise PipelineError(f"config key 'analysis.methods': {m!r} is not a configured method (known: {', '.join(config['methods'])})")
    for s in cfg["seeds"] or []:
        if s not in config["seeds"]:
            raise PipelineError(f"config key 'analysis.seeds': seed {s} is not in seeds {config['seeds']}")
    compile_patterns(cfg)
