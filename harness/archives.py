"""Exchange archives as tests and benchmarks make and read them: gzip'd tars of named files."""

from __future__ import annotations

import io
import tarfile


def targz(files: dict[str, bytes]) -> bytes:
    """A gzip'd tar holding ``files`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def untargz(data: bytes) -> dict[str, bytes]:
    """The regular files of a gzip'd tar (name -> content)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            if member.isreg():
                handle = archive.extractfile(member)
                assert handle is not None
                out[member.name] = handle.read()
    return out
