"""The generated references (course.yaml, CLI) match the code, and cover all of it."""

from __future__ import annotations

import argparse
import re

from pydantic import BaseModel

from hub import cli_docs, course_docs
from hub.cli import build_parser
from hub.courses import Course
from hub.reference_docs import model_tables


def test_course_yaml_reference_is_up_to_date() -> None:
    committed = course_docs.REFERENCE.read_text()
    assert committed == course_docs.render(), "run: python -m hub.course_docs"


def test_cli_reference_is_up_to_date() -> None:
    committed = cli_docs.REFERENCE.read_text()
    assert committed == cli_docs.render(), "run: python -m hub.cli_docs"


def test_every_course_key_is_documented() -> None:
    # Nested sections (price, limits, grading, ...) and list items are found by walking the model.
    keys = set(re.findall(r"^\| `([^`]+)` \|", course_docs.render(), flags=re.MULTILINE))
    for name, field in Course.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                # A nested section is documented key by key (e.g. grading.sandbox.memory).
                path = f"{name}.{sub}"
                assert path in keys or any(k.startswith(path + ".") for k in keys), path
        else:
            assert name in keys
    assert "assignments[].due" in keys


def test_a_new_section_is_picked_up() -> None:
    class Extra(BaseModel):
        """A section added later."""

        knob: int = 3

    class Outer(BaseModel):
        extra: Extra = Extra()
        items: list[Extra] = []

    lines: list[str] = []
    model_tables(Outer, "", lines)
    text = "\n".join(lines)
    assert "| `extra.knob` | int | `3` |" in text
    assert "## `items[]`" in text


def test_every_cli_command_and_option_is_documented() -> None:
    text = cli_docs.render()

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        assert f"## `{name}`" in text
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in text, option

    walk(build_parser(), "learnhub")
