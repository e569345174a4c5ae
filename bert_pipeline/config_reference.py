"""The configuration reference, generated from the pydantic models in `config.py`: one source for every setting.

The documentation's reference page (`docs/gen_pages.py`, built by `make docs`) and `bert-pipeline --help` both
render `settings()`, so a setting's meaning is written once, in its `Field(description=...)`, and a field without
one fails `tests/unit/test_config_reference.py`.
"""

from __future__ import annotations

import json
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bert_pipeline.config import PipelineConfig, today_utc

# Defaults computed when a run starts, shown by what they mean rather than by today's value.
COMPUTED_DEFAULTS = {today_utc: "today (UTC; a scheduled run: the date it was scheduled for)"}


@dataclass(frozen=True)
class Setting:
    """One configuration key: `key` dotted as in YAML nesting and `--set` (e.g. "train.epochs"), `kind` its accepted
    values ("integer | auto"), `default` as YAML would write it, `limits` ("≥ 1, ≤ 1000" or ""), `description`."""

    key: str
    kind: str
    default: str
    limits: str
    description: str

    @property
    def section(self) -> str:
        """The top-level section ("train"), or "" for a top-level key such as data_root."""
        return self.key.split(".")[0] if "." in self.key else ""


def settings(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[Setting]:
    """Every leaf setting of `model`, sections expanded, in declaration order. A field without a description has
    description "" (see `undescribed`)."""
    found: list[Setting] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if _is_section(field.annotation):
            found += settings(field.annotation, f"{key}.")
            continue
        found.append(Setting(key, kind_of(field.annotation), default_of(field), limits_of(field),
                             " ".join((field.description or "").split())))
    return found


def undescribed(model: type[BaseModel] = PipelineConfig) -> list[str]:
    """Dotted keys of the settings whose Field has no description."""
    return [s.key for s in settings(model) if not s.description]


def kind_of(annotation: Any) -> str:
    """The values a type accepts, as a user writes them: Literal["a", "b"] -> "a | b"; int | None -> "integer or
    empty"; list[str] -> "list of text"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [kind_of(a) for a in args if a is not type(None)]
        joined = " | ".join(kinds)
        return f"{joined} or empty" if type(None) in args else joined
    if origin in (list, tuple, set):
        return f"list of {kind_of(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return {int: "integer", float: "number", str: "text", bool: "true | false"}.get(annotation, str(annotation))


def default_of(field: FieldInfo) -> str:
    """The default as YAML would write it ("" for an empty text, "empty" for None, "[]" for an empty list)."""
    if field.default_factory is not None:
        if field.default_factory in COMPUTED_DEFAULTS:
            return COMPUTED_DEFAULTS[field.default_factory]
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if not value.strip() else value  # "" would be invisible
    if isinstance(value, (int, float)):
        return f"{value:_}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)
    return json.dumps(value, ensure_ascii=False)


def limits_of(field: FieldInfo) -> str:
    """Numeric bounds of a field ("≥ 0, < 1"), "" when it has none."""
    signs = {annotated_types.Ge: ("≥", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("≤", "le"),
             annotated_types.Lt: ("<", "lt")}
    parts = []
    for item in field.metadata:
        for kind, (sign, attr) in signs.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(parts)


def markdown(model: type[BaseModel] = PipelineConfig) -> str:
    """The reference page: one table per section (top-level keys first), columns key, values, default, meaning."""
    by_section: dict[str, list[Setting]] = {}
    for setting in settings(model):
        by_section.setdefault(setting.section, []).append(setting)
    out = []
    for section, rows in by_section.items():
        out.append(f"## `{section}`" if section else "## Top level")
        doc = model.model_fields[section].annotation.__doc__ if section else None
        if doc:
            out.append(" ".join(doc.split()))
        out.append("")
        out.append("| key | values | default | meaning |")
        out.append("|---|---|---|---|")
        for s in rows:
            values = s.kind + (f" ({s.limits})" if s.limits else "")
            out.append(f"| `{s.key}` | {_cell(values)} | {_cell(s.default)} | {_cell(s.description)} |")
        out.append("")
    return "\n".join(out)


def cli_text(sections: typing.Collection[str] | None = None, model: type[BaseModel] = PipelineConfig,
             width: int = 100) -> str:
    """The keys as `bert-pipeline --help` prints them: the key, its values and default, then the meaning indented.
    `sections` picks the top-level keys plus those sections (None: every key)."""
    lines = []
    for s in settings(model):
        if sections is not None and s.section and s.section not in sections:
            continue
        values = s.kind + (f", {s.limits}" if s.limits else "")
        lines.append(f"  {s.key}  [{values}; default {s.default}]")
        lines += textwrap.wrap(s.description, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (a | would end the cell)."""
    return text.replace("|", "\\|") if text else " "
