"""Docker Swarm deployment helpers: course images with the materials inside.

On Swarm a course server may run on any node, where the hub host's ``courses/<id>/materials``
folder is not: so each course gets an image, ``spawner.swarm.course_image``, that is the course
image (``course.yaml``'s or ``spawner.image``) plus the materials at ``/srv/learnhub/materials``,
where the entrypoint's sync reads them. ``python -m hub.swarm images`` builds them (and pushes
them when the name starts with a registry), to be run after every materials change; see
docs/how-to/scale.md#docker-swarm.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import docker
from docker.client import DockerClient

from hub.courses import CourseEntry, load_course
from hub.docker_engine import docker_client
from hub.errors import LearnHubError
from hub.settings import settings_from_environment

#: The Dockerfile of every course's Swarm image (the materials are sent next to it).
COURSE_DOCKERFILE = (
    Path(__file__).resolve().parent.parent / "docker" / "swarm-course" / "Dockerfile"
)


class SwarmImageError(RuntimeError):
    """A course image could not be built or pushed; the message says which and why."""


def course_image_name(template: str, course_id: str) -> str:
    """The image of `course_id`'s servers (`spawner.swarm.course_image`, `{course}` filled)."""
    return template.format(course=course_id)


def _context(materials: Path) -> io.BytesIO:
    """The build context: the Dockerfile and the materials, root-owned and world-readable (the
    learner's uid 1000 reads them at start), never following links out of the folder."""
    buffer = io.BytesIO()

    def readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755 if info.isdir() else 0o644
        info.mtime = 0  # the same materials give the same context, so the cached image is reused
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(COURSE_DOCKERFILE, arcname="Dockerfile", filter=readable)
        tar.add(materials, arcname="materials", recursive=False, filter=readable)
        for path in sorted(materials.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue  # a link could point at the hub host's files
            tar.add(
                path,
                arcname=f"materials/{path.relative_to(materials)}",
                recursive=False,
                filter=readable,
            )
    buffer.seek(0)
    return buffer


def build_course_image(
    client: DockerClient, entry: CourseEntry, *, base_image: str, tag: str
) -> str:
    """Build `tag` for the course of `entry` from `base_image`; return the image id."""
    if not entry.materials_dir.is_dir():
        raise SwarmImageError(f"{entry.materials_dir}: the course has no materials folder")
    try:
        image, _logs = client.images.build(
            fileobj=_context(entry.materials_dir),
            custom_context=True,
            tag=tag,
            buildargs={"COURSE_BASE": base_image},
            rm=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        raise SwarmImageError(
            f"course image {tag} of {entry.course.id} did not build: {exc.msg}; is {base_image} "
            "built (`learnhub images build`)?"
        ) from exc
    return str(image.id)


def _has_registry(name: str) -> bool:
    first = name.split("/", 1)[0]
    return "/" in name and ("." in first or ":" in first or first == "localhost")


def build_all(courses_dir: Path, *, template: str, default_image: str, push: bool) -> list[str]:
    """Build (and push) the Swarm image of every course in `courses_dir`; return the names."""
    client = docker_client(version="auto")
    names = []
    try:
        for folder in sorted(p for p in courses_dir.iterdir() if (p / "course.yaml").is_file()):
            entry = load_course(folder)
            tag = course_image_name(template, entry.course.id)
            build_course_image(
                client, entry, base_image=entry.course.image or default_image, tag=tag
            )
            if push and _has_registry(tag):
                for line in client.images.push(tag, stream=True, decode=True):
                    if "error" in line:
                        raise SwarmImageError(f"push of {tag} failed: {line['error']}")
            names.append(tag)
    finally:
        client.close()
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.swarm images [--no-push]``: build every course's Swarm image.

    Settings as for ``learnhub``: ``LEARNHUB_CONFIG`` or ``./learnhub.yaml``, plus LEARNHUB_*.
    """
    parser = argparse.ArgumentParser(prog="python -m hub.swarm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="build (and push) every course's Swarm image")
    images.add_argument("--no-push", action="store_true", help="build only")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_environment(os.environ, Path.cwd() / "learnhub.yaml")
        names = build_all(
            settings.courses_dir,
            template=settings.spawner.swarm.course_image,
            default_image=settings.spawner.image,
            push=not args.no_push,
        )
    except (LearnHubError, SwarmImageError, docker.errors.DockerException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in names:
        print(name)
    return 0 if args.command == "images" else 2


if __name__ == "__main__":
    raise SystemExit(main())
