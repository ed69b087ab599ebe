"""Reference pages generated from the code: the shared parts.

`hub.settings_docs` (settings), `hub.course_docs` (course.yaml) and `hub.cli_docs` (the CLI)
each render one page of `docs/reference/`; a test per page checks that the committed page is
what the code generates, so the reference cannot drift.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import BaseModel
from pydantic.fields import FieldInfo

#: The folder of the generated pages.
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "docs" / "reference"


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _list_item(annotation: Any) -> type[BaseModel] | None:
    """The model of ``list[Model]``, else None."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if _is_model(item):
            return item
    return None


def _annotation_name(annotation: Any) -> str:
    """A type as a reader writes it: ``str | None``, ``list[str]``; constraints left out."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotation_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_annotation_name(arg) for arg in args)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(arg) for arg in args) + "]"
    if origin is not None:
        inner = ", ".join(_annotation_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _type_name(field: FieldInfo) -> str:
    return _annotation_name(field.annotation).replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    if field.is_required():
        return "required"
    if isinstance(field.default, Path):
        return f"`{field.default}`"
    return f"`{field.default!r}`"


def model_tables(model: type[BaseModel], prefix: str, lines: list[str]) -> None:
    """Append a table of ``model``'s keys (then one per nested model) to ``lines``.

    A field whose type is a model is a section of its own (``prefix.key.``); a list of models
    is one too, its items written ``key[].``.
    """
    nested: list[tuple[str, type[BaseModel]]] = []
    rows: list[str] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        key = f"{prefix}{name}"
        if _is_model(annotation):
            nested.append((key, annotation))
            continue
        item = _list_item(annotation)
        if item is not None:
            nested.append((f"{key}[]", item))
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # optional section
            nested += [(key, arg) for arg in typing.get_args(annotation) if _is_model(arg)]
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field)} | {_default(field)} | {description} |")
    if rows:
        lines.append(f"## `{prefix.rstrip('.') or '(top level)'}`")
        lines.append("")
        if model.__doc__:
            lines.append(" ".join(model.__doc__.split()))
            lines.append("")
        lines.append("| key | type | default | what it does |")
        lines.append("|---|---|---|---|")
        lines.extend(rows)
        lines.append("")
    for key, sub in nested:
        model_tables(sub, f"{key}.", lines)


def write_or_check(path: Path, text: str, module: str) -> int:
    """Write ``text`` to ``path``; with `--check` on the command line, fail when it differs."""
    if "--check" in sys.argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0
