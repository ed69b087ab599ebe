"""The exchange client's module name before it moved to ``learnhub_container.exchange``.

Instructors' grading folders keep the ``nbgrader_config.py`` that ``learnhub grader`` wrote,
which falls back to ``from learnhub_exchange import configure_nbgrader`` in a course container;
this keeps such a file working until the next ``learnhub grader`` command rewrites it.
"""

from learnhub_container.exchange import configure_nbgrader

__all__ = ["configure_nbgrader"]
