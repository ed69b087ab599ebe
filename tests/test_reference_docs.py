"""The generated references (course.yaml, CLI) match the code, and cover all of it."""

from __future__ import annotations

import argparse
import re
import typing
import unicodedata
from pathlib import Path

import yaml
from pydantic import BaseModel

from hub import cli_docs, course_docs
from hub.cli import build_parser
from hub.courses import Course
from hub.reference_docs import model_tables
from hub.settings import Settings


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
    assert "completion.min_percent_each" in keys


def test_a_new_section_is_picked_up() -> None:
    class Extra(BaseModel):
        """A section added later."""

        knob: int = 3

    class Outer(BaseModel):
        extra: Extra = Extra()
        items: list[Extra] = []
        maybe: Extra | None = None

    lines: list[str] = []
    model_tables(Outer, "", lines)
    text = "\n".join(lines)
    assert "| `extra.knob` | int | `3` |" in text
    assert "## `items[]`" in text
    # An optional section (course.yaml's `completion:`) is documented key by key too.
    assert "| `maybe.knob` | int | `3` |" in text


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


# What a newcomer reads: README.md and docs/. Each check below was first done by hand by someone
# following the docs on a fresh clone; kept here so the docs cannot drift from the code again.

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(text: str, *languages: str) -> list[str]:
    """The fenced code blocks of a Markdown text in one of these languages ("" = unlabelled)."""
    return [body for language, body in BLOCK.findall(text) if language in languages]


def _heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6} +(.+?) *$", FENCE.sub("", path.read_text()), re.M):
        text = match.group(1).replace("`", "").strip().lower()
        slug = "".join(
            ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LN"
        ).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    broken = []
    for doc in DOC_FILES:
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", doc.read_text()))
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z][a-z+]*:", target):
                continue  # http(s), mailto: not followed offline
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path) if path else doc
            where = f"{doc.relative_to(ROOT)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _heading_anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert not broken, broken


def _documented_commands() -> list[tuple[Path, str]]:
    """`learnhub …` command lines of the docs: shell blocks and inline code."""
    found = []
    for doc in [d for d in DOC_FILES if "reference" not in d.parts]:
        text = doc.read_text()
        for block in _blocks(text, "sh", "bash", "console", ""):
            for line in block.splitlines():
                match = re.match(r"^\s*(?:\$ )?(?:\S*/)?(?:\.venv/bin/)?learnhub (.*)", line)
                if match:
                    found.append((doc, match.group(1).split("#")[0].rstrip(" \\")))
        for span in re.findall(r"`(?:\.venv/bin/)?learnhub ([^`]+)`", FENCE.sub("", text)):
            found.append((doc, span))
    return found


def test_documented_learnhub_commands_and_options_exist() -> None:
    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
        return {o: a for a in parser._actions for o in a.option_strings}

    top = build_parser()
    commands = _documented_commands()
    assert len(commands) > 30, "the docs' commands were not found: fix the pattern"
    wrong = []
    for doc, line in commands:
        parser, words = top, line.replace("[", " ").replace("]", " ").replace("|", " ").split()
        skip_value = False
        for word in words:
            if skip_value:
                skip_value = False
                continue
            if word.startswith("--") or re.fullmatch(r"-[a-z]", word):
                name = word.split("=")[0]
                action = options(parser).get(name) or options(top).get(name)
                if action is None:
                    wrong.append(f"{doc.relative_to(ROOT)}: learnhub {line}: no option {name}")
                    break
                skip_value = action.nargs != 0 and "=" not in word
                continue
            subs = subcommands(parser)
            if not subs:
                break  # positional arguments from here on
            if word not in subs:
                wrong.append(f"{doc.relative_to(ROOT)}: learnhub {line}: no command {word!r}")
                break
            parser = subs[word]
    assert not wrong, wrong


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_of(arg)
        if model is not None:
            return model
    return None


def _unknown_keys(model: type[BaseModel], data: object, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return []
    unknown = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(prefix + str(key))
            continue
        sub = _model_of(field.annotation)
        if sub is None or typing.get_origin(field.annotation) is dict:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            unknown += _unknown_keys(sub, item, f"{prefix}{key}.")
    return unknown


def test_yaml_examples_in_the_docs_use_real_settings_and_course_keys() -> None:
    checked, wrong = 0, []
    for doc in DOC_FILES:
        for block in _blocks(doc.read_text(), "yaml"):
            data = yaml.safe_load(block)
            if not isinstance(data, dict):
                continue
            model: type[BaseModel] = Settings if set(data) <= set(Settings.model_fields) else Course
            checked += 1
            wrong += [f"{doc.relative_to(ROOT)}: {k}" for k in _unknown_keys(model, data)]
    assert checked >= 5
    assert not wrong, wrong


def test_every_service_module_is_on_the_architecture_map() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## The service's code", 1)[1].split("\n## ", 1)[0]
    modules = sorted(p.name for p in (ROOT / "hub" / "service").glob("*.py"))
    missing = [m for m in modules if m != "__init__.py" and f"`{m}`" not in table]
    assert not missing, f"add them to docs/architecture.md, 'The service's code': {missing}"


def test_the_readme_opens_with_its_two_commands_and_ci_runs_the_second() -> None:
    first = _blocks((ROOT / "README.md").read_text().split("\n# ", 1)[0], "sh")
    assert len(first) == 1, "README.md must open with one sh block: the demo and the test command"
    commands = [line.split("#")[0].strip() for line in first[0].splitlines()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o111, f"{command} is not executable"
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
