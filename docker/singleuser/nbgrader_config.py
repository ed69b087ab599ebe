# nbgrader configuration of every LearnHub course container (installed as
# /opt/learnhub/venv/etc/jupyter/nbgrader_config.py, which nbgrader reads for every command and
# for JupyterLab's Assignments tab).
#
# Assignments go through LearnHub's HTTP exchange (`learnhub_container.exchange`), authorised
# per course by this server's own hub token: there is no shared exchange directory. The
# spawner sets LEARNHUB_COURSE (this container's course) and LEARNHUB_EXCHANGE_URL.
import os

from learnhub_container.exchange import configure_nbgrader

c = get_config()  # noqa: F821 - injected by traitlets when it loads this file
configure_nbgrader(c, os.environ.get("LEARNHUB_COURSE"))
