"""The harness that tests and benchmarks share: a real hub + proxy, Docker cleanup, stand-ins.

A top-level package, not part of `hub`: it drives this checkout's `jupyterhub_config.py` and the
docker CLI, needs only the repository (never an installed LearnHub) and must not ship in the
wheel. `tests/` and `benchmarks/` both import it; neither imports the other.
"""
