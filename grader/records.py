"""What the host remembers about a course's grading directory between commands.

Kept in ``<grading dir>/.learnhub/`` (host only: never published to the instructors' copy):

- ``sources.json``: for each assignment, the digest of ``courses/<id>/source/<assignment>/``
  when it was last copied into the grading source, so a later change of the course repository
  is noticed (and reported) instead of silently overwriting the formgrader's edits;
- ``graded-<assignment>.json``: for each learner, the digest of the collected submission
  that was last autograded, so an autograde run skips what it graded already.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

#: Folder of these records inside a course's host grading directory.
RECORDS_DIR = ".learnhub"


def tree_digest(folder: Path, *, skip: frozenset[str] = frozenset()) -> str:
    """SHA-256 over the relative paths and contents of the regular files under ``folder``.

    Links are not followed; folder names in ``skip`` (e.g. ``.ipynb_checkpoints``) are left
    out. An empty or missing folder has the digest of nothing.
    """
    digest = hashlib.sha256()
    if not folder.is_dir():
        return digest.hexdigest()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


def read_record(root: Path, name: str) -> dict[str, str]:
    """The record ``name`` of the grading directory ``root`` (empty when missing or spoiled)."""
    try:
        data = json.loads((root / RECORDS_DIR / name).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def write_record(root: Path, name: str, values: dict[str, str]) -> None:
    """Replace the record ``name`` atomically (a crash leaves the old or the new one)."""
    folder = root / RECORDS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    temp = folder / f".{name}.{secrets.token_hex(8)}"
    temp.write_text(json.dumps(values, indent=1, sort_keys=True))
    temp.replace(folder / name)
