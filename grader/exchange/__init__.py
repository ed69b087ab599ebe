"""LearnHub's assignment exchange: nbgrader's exchange interfaces over HTTP.

``storage`` keeps released assignments, submissions and feedback (files plus a DB index),
``server`` serves them from the LearnHub service with per-course authorisation (``auth``), and
``client`` holds the nbgrader exchange classes that talk to it from course containers and from
the instructor's tools. The client module has no dependency beyond nbgrader and the standard
library, because it is also installed into the course image as ``learnhub_exchange``.
"""
