"""JupyterHub configuration for LearnHub: wiring only.

Settings come from `learnhub.yaml` (or the file named by LEARNHUB_CONFIG) plus LEARNHUB_*
environment variables, validated by `hub.settings`; the functions below apply them to `c`.
See docs/reference/settings.md.
"""

import importlib.util
import os
import sys
from pathlib import Path

from hub.courses import Catalog
from hub.errors import LearnHubError
from hub.hubconfig import apply_all
from hub.network import check_course_networks
from hub.settings import settings_from_environment
from hub.upgrade import refuse_unmigrated

c = get_config()  # noqa: F821 - injected by JupyterHub when it loads this file
# Files the Hub and its children create (databases, pid files) are their owner's alone.
os.umask(0o077)

here = Path(__file__).resolve().parent
try:
    settings = settings_from_environment(os.environ, here / "learnhub.yaml")
    catalog = Catalog.load(settings.courses_dir)
    apply_all(c, settings, catalog)
    check_course_networks(settings)  # missing or not isolating: run `learnhub network apply`
    refuse_unmigrated(settings)  # either database behind the code: run `learnhub upgrade`
except LearnHubError as exc:
    # One clear message naming file, key and problem (or the missing network); no traceback.
    sys.exit(f"learnhub: cannot start:\n{exc}")

# spawner_config.py sits beside this file and is not part of the installed package.
_spec = importlib.util.spec_from_file_location("spawner_config", here / "spawner_config.py")
assert _spec and _spec.loader
spawner_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spawner_config)
spawner_config.apply_spawner(c, settings)
