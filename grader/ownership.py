"""Who owns grading folders: the course containers' user, so the formgrader can write.

Kept free of nbgrader imports: the Hub process uses it at every instructor spawn.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The user of course containers (see docker/singleuser/Dockerfile).
CONTAINER_UID, CONTAINER_GID = 1000, 100


def give_to_container_user(folder: Path) -> None:
    """Hand `folder` and everything in it to uid 1000 (no-op unless running as root).

    `learnhub grader` and the Hub run as root on the host; the instructor's course server runs
    as uid 1000 and must write the gradebook and the course files.
    """
    if os.geteuid() != 0:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, CONTAINER_UID, CONTAINER_GID, follow_symlinks=False)
