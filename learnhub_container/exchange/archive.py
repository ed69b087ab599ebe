"""Packing and unpacking what goes over the exchange: gzip'd tars, checked on the way in."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from pathlib import PurePosixPath
from typing import Any

#: What the client accepts from the server when unpacking (bounds a broken or hostile reply).
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f]")


def safe_name(name: str, what: str) -> str:
    """``name`` if it can be used as one path component, else ValueError."""
    if not name or name in (".", "..") or name.startswith(".") or _UNSAFE_NAME.search(name):
        raise ValueError(f"unsafe {what} from the exchange: {name!r}")
    return name


def pack(folder: str, ignore: Any = None) -> bytes:
    """A gzip'd tar of ``folder``'s regular files (relative names), skipping what ``ignore``
    (a :func:`shutil.copytree`-style ignore function) says, and every symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for dirpath, dirnames, filenames in os.walk(folder):
            ignored = set(ignore(dirpath, dirnames + filenames)) if ignore else set()
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in ignored and not os.path.islink(os.path.join(dirpath, d))
            )
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                if filename in ignored or os.path.islink(path) or not os.path.isfile(path):
                    continue
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                archive.add(path, arcname=rel, recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, dest: str) -> None:
    """Unpack a gzip'd tar from the exchange into ``dest``: regular files and folders only,
    no absolute paths, no ``..`` (checked here rather than trusting the server)."""
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            rel = PurePosixPath(member.name)
            parts = [p for p in rel.parts if p not in ("", ".")]
            if rel.is_absolute() or not parts or ".." in parts:
                raise ValueError(f"unsafe path in download: {member.name!r}")
            target = os.path.join(dest, *parts)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            if not member.isreg():
                raise ValueError(f"unexpected non-file in download: {member.name!r}")
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise ValueError("download unpacks to more than 1 GiB")
            source = archive.extractfile(member)
            if source is None:
                raise ValueError(f"no data for {member.name!r}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def file_md5(path: str) -> str:
    with open(path, "rb") as fh:
        # md5 because nbgrader's own list compares feedback files that way.
        return hashlib.md5(fh.read(), usedforsecurity=False).hexdigest()
