"""The config schema, public: loading it, validating a config or one section of it with its
defaults filled, and the one error type of an invalid config.

Used by :mod:`pipeline.config` (the whole config, then the cross-field checks) and by
:mod:`pipeline.analysis.settings` (the ``analysis`` section alone); import-light (no torch).
"""

from __future__ import annotations

import copy
from importlib import resources

import yaml
from jsonschema import Draft202012Validator, validators

from pipeline.errors import PipelineError

SCHEMA_PATH = resources.files("pipeline") / "schemas" / "config.schema.yaml"


class ConfigError(PipelineError):
    """The config is invalid; the message names the offending key."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def with_defaults(validator_class):
    """A validator that fills ``default`` values while validating (as snakemake.utils.validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def describe_error(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        if unknown and allowed:
            key = f"{path}.{unknown[0]}" if path else unknown[0]
            return f"config key '{key}': unknown key (allowed here: {', '.join(sorted(allowed))})"
    return f"config key '{path or '(top level)'}': {error.message}"


def validate_schema(config: dict) -> dict:
    """Validate against the JSON schema, filling defaults in place; ConfigError on the first problem."""
    schema = load_schema()
    validator = with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest error is usually the most specific one.
        err = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(describe_error(err))
    return config


def validate_section(name: str, section: dict | None) -> dict:
    """A copy of the config section ``name`` validated against its schema entry, defaults filled."""
    schema = load_schema()
    sub = {**schema["properties"][name], "$defs": schema.get("$defs", {})}
    section = copy.deepcopy(section or {})
    errors = list(with_defaults(Draft202012Validator)(sub).iter_errors(section))
    if errors:
        err = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(describe_error(err).replace("config key '", f"config key '{name}.", 1).replace(".(top level)", ""))
    return section
