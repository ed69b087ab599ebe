"""A process spawner with the LearnHub course checks, for tests of hub logic only.

It runs learner servers as processes of the hub's own user on the hub host, with no isolation,
so production mode refuses it (see `hub.settings`).
"""

from __future__ import annotations

from typing import Any

from jupyterhub.spawner import LocalProcessSpawner

from hub.spawner import CourseSpawnerMixin


class LearnHubLocalSpawner(CourseSpawnerMixin, LocalProcessSpawner):  # type: ignore[misc]
    """LocalProcessSpawner that refuses courses the user may not open."""

    async def start(self) -> Any:
        """Check access, then start a local server process."""
        entry = self.authorize_course()
        self.environment = {**self.environment, **self.course_environment(entry)}
        return await super().start()
