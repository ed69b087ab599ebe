"""LearnHub's assignment exchange: nbgrader's exchange interfaces over HTTP.

``storage`` keeps released assignments, submissions and feedback (files plus a DB index),
``server`` serves them from the LearnHub service with per-course authorisation (``auth``). The
nbgrader exchange classes that talk to it from course containers and from the instructor's
tools run inside containers, so they live in ``learnhub_container.exchange``.
"""
