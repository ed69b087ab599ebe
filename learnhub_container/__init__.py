"""What runs inside LearnHub's course and sandbox containers (and nothing else).

- ``materials``: syncs a course's materials into the learner's home at every server start
  (run by the image's entrypoint, ``docker/singleuser/learnhub-start``);
- ``exchange``: nbgrader's exchange over HTTP, one operation per module (learners' Assignments
  tab and nbgrader commands; the instructor's ``learnhub grader`` uses it on the host too);
- ``lazy_nbgrader``: the server extension that serves nbgrader's learner routes and imports
  nbgrader at their first request;
- ``patch_jupyterhub``: run once at image build, makes the single-user server's imports of the
  Hub's ORM lazy;
- ``sandbox_runner``: executes one submitted notebook inside a grading sandbox. It is copied
  into each sandbox as a single file, so it imports nothing of this package either.

The image build copies this package whole into the course image. It imports nothing from
``hub`` or ``grader`` (``tests/test_container_package.py`` walks its imports to prove it): host
code may import it, never the other way round.
"""
