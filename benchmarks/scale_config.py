"""The hub config `benchmarks/scale.py` runs: LearnHub's own, with the no-op spawner.

Everything LearnHub configures stays as an operator gets it (`jupyterhub_config.py`, loaded
first, from the same settings file); only the spawner class is swapped, and it is told where the
benchmark's shared HTTP server listens (``SCALE_BENCH_SERVER_URL``, set by the benchmark).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 - injected by JupyterHub when it loads this file
load_subconfig(str(Path(__file__).resolve().parent.parent / "jupyterhub_config.py"))  # noqa: F821
c.JupyterHub.spawner_class = "benchmarks.noop_spawner.NoopSpawner"
c.NoopSpawner.shared_url = os.environ["SCALE_BENCH_SERVER_URL"]
