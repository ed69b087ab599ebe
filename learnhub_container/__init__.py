"""What runs inside LearnHub's course and sandbox containers (and nothing else).

- ``sandbox_runner``: executes one submitted notebook inside a grading sandbox. It is copied
  into each sandbox as a single file, so it imports nothing of this package either.

It imports nothing from ``hub`` or ``grader``: host code may import it, never the other way round.
"""
