"""Structural validation of events against the JSON Schemas under ``schemas/``.

Each file ``<event_type>.v<N>.json`` is one version of one event type; a new
version is a new file, and old versions stay accepted (events.md). Schemas are
compiled once, at import, twice: jsonschema-rs (compiled Rust) decides whether an
event is valid, in ~3 µs where fastjsonschema's generated Python takes ~35 µs, a
few percent of a worker's CPU per invoice; fastjsonschema then explains a rejected
event, because its errors carry the rule and the schema's own description that our
messages quote. Domain rules (invoice-domain.md) are not checked here but in
``streams.validation``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import fastjsonschema
import jsonschema_rs

from streams.errors import ConfigurationError, SchemaViolationError

__all__ = ["KNOWN_SCHEMA_VERSIONS", "SCHEMA_DIR", "validate_event"]

_FILE_NAME = re.compile(r"^(?P<event_type>[a-z_]+(?:\.[a-z_]+)+)\.v(?P<version>[1-9][0-9]*)\.json$")
#: values quoted back in messages are cut to this many characters
_QUOTE_LIMIT = 60

_Validator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Schema:
    #: the yes or no, fast
    gate: jsonschema_rs.Validator
    #: the reason for a no, in our words
    explain: _Validator


def _schema_dir() -> Path:
    # A wheel force-includes the repo's ``schemas/`` as ``streams/schemas``; a source
    # checkout (editable install, tests) has it at the top of the repository.
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "schemas", package.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(f"no schemas directory under {package} or {package.parent}")


def _load(directory: Path) -> dict[str, dict[int, _Schema]]:
    validators: dict[str, dict[int, _Schema]] = {}
    for path in sorted(directory.glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        schema = json.loads(path.read_text(encoding="utf-8"))
        try:
            explain = fastjsonschema.compile(schema)
            # Draft 7 asserts "format" (date-time), as fastjsonschema does.
            gate = jsonschema_rs.validator_for(schema)
        except (fastjsonschema.JsonSchemaDefinitionException, ValueError) as exc:
            raise ConfigurationError(f"schema {path} does not compile: {exc}") from exc
        by_version = validators.setdefault(match["event_type"], {})
        by_version[int(match["version"])] = _Schema(gate, explain)
    if not validators:
        raise ConfigurationError(f"no <event_type>.v<N>.json schemas in {directory}")
    return validators


SCHEMA_DIR = _schema_dir()
_VALIDATORS = _load(SCHEMA_DIR)

#: event type -> the ``schema_version`` values this pipeline accepts for it
KNOWN_SCHEMA_VERSIONS: Mapping[str, frozenset[int]] = MappingProxyType(
    {event_type: frozenset(versions) for event_type, versions in _VALIDATORS.items()}
)


def validate_event(event_type: str, obj: object) -> None:
    """Check ``obj`` against the schema of ``event_type`` at its ``schema_version``.

    Raises ``SchemaViolationError`` whose ``field`` is a path such as
    ``invoice.lines[2].tax_amount`` (None when the event as a whole is wrong).
    """
    versions = _VALIDATORS.get(event_type)
    if versions is None:
        known = ", ".join(sorted(_VALIDATORS))
        raise SchemaViolationError(
            f"unknown event type {event_type!r}; known: {known}", field="event_type"
        )
    if not isinstance(obj, dict):
        raise SchemaViolationError(f"an event must be a JSON object, got {_json_type(obj)}")
    if "schema_version" not in obj:
        raise SchemaViolationError("schema_version is missing", field="schema_version")
    version = obj["schema_version"]
    # bool is an int in Python but not in JSON; 1.0 is an integer in JSON Schema.
    if isinstance(version, bool) or not isinstance(version, int | float) or version not in versions:
        known_versions = ", ".join(str(v) for v in sorted(versions))
        raise SchemaViolationError(
            f"schema_version {_quote(version)} is not one this pipeline knows for "
            f"{event_type} (known: {known_versions})",
            field="schema_version",
        )
    schema = versions[int(version)]
    if schema.gate.is_valid(obj):
        return
    # Where the two would disagree, fastjsonschema's word stands, as it did alone.
    try:
        schema.explain(obj)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = _field_path(exc)
        raise SchemaViolationError(_describe(exc, field), field=field or None) from exc


def _field_path(exc: fastjsonschema.JsonSchemaValueException) -> str:
    parts = list(exc.path[1:])  # the first element is fastjsonschema's root name, "data"
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = [key for key in exc.rule_definition or () if key not in exc.value]
        if missing:
            parts.append(str(missing[0]))
    out = ""
    for part in parts:
        # fastjsonschema gives array indices as strings; every property our schemas
        # constrain is an identifier, so an all-digit part is always an index.
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _describe(exc: fastjsonschema.JsonSchemaValueException, field: str) -> str:
    where = field or "the event"
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    expected = definition.get("description")
    rule = exc.rule
    if rule == "required":
        return f"{where} is missing"
    if rule == "type":
        wanted = exc.rule_definition
        names = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        return f"{where} must be {names}, got {_json_type(exc.value)}"
    if rule in ("pattern", "format") and expected:
        return f"{where} must be {expected}, got {_quote(exc.value)}"
    if rule == "const":
        return f"{where} must be {_quote(exc.rule_definition)}, got {_quote(exc.value)}"
    if rule == "enum":
        choices = ", ".join(_quote(c) for c in exc.rule_definition or ())
        return f"{where} must be one of {choices}, got {_quote(exc.value)}"
    # fastjsonschema's messages start with its own name for the path ("data.x[0]").
    detail = exc.message.removeprefix(exc.name or "").strip()
    return f"{where} {detail}, got {_quote(exc.value)}"


def _quote(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
