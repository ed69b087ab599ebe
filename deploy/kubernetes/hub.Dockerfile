# The Hub's image for Zero to JupyterHub (values.yaml: hub.image): LearnHub and what the
# chart's hub config needs, run the way the chart runs its own hub image (uid 1000, the command
# `jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py`, /srv/jupyterhub).
#
# Not the chart's quay.io/jupyterhub/k8s-hub image plus LearnHub: that image's Python is not the
# one LearnHub pins (3.11), and no registry is reachable where LearnHub is built. It starts from
# LearnHub's offline base instead (docker/base/bootstrap.sh; Debian bookworm's Python 3.11).
# Build it from the repository root, with the build host's CA bundle for pip, and push it where
# the cluster pulls from:
#
#   mkdir -p certs && cp /etc/ssl/certs/ca-certificates.crt certs/
#   docker build -f deploy/kubernetes/hub.Dockerfile -t REGISTRY/learnhub/k8s-hub:TAG .
#
# Written for the classic builder: no BuildKit-only syntax.

ARG BASE_IMAGE=learnhub/base:bookworm
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="LearnHub Hub for Kubernetes" \
      org.opencontainers.image.licenses="BSD-3-Clause"

COPY certs/ca-certificates.crt /tmp/learnhub-certs/ca-certificates.crt
COPY pyproject.toml uv.lock README.md spawner_config.py /srv/learnhub/
COPY hub/ /srv/learnhub/hub/
COPY grader/ /srv/learnhub/grader/
COPY learnhub_container/ /srv/learnhub/learnhub_container/
COPY courses/ /srv/learnhub/courses/

# LearnHub with exactly the dependencies CI tests (uv.lock, no dev group); then pycurl, because
# the chart's jupyterhub_config.py makes Tornado use curl for the Hub's requests to the proxy.
RUN set -eu; \
    python3 -m venv /opt/learnhub/venv; \
    export PIP_CERT=/tmp/learnhub-certs/ca-certificates.crt \
        SSL_CERT_FILE=/tmp/learnhub-certs/ca-certificates.crt \
        PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 UV_NO_CACHE=1 \
        UV_PROJECT_ENVIRONMENT=/opt/learnhub/venv UV_PYTHON=/opt/learnhub/venv/bin/python; \
    /opt/learnhub/venv/bin/pip install --progress-bar off uv==0.13.8; \
    /opt/learnhub/venv/bin/uv sync --project /srv/learnhub --frozen --no-dev --no-editable \
        --inexact; \
    /opt/learnhub/venv/bin/pip install --progress-bar off pycurl==7.49.0; \
    /opt/learnhub/venv/bin/pip uninstall --yes uv; \
    rm -r /tmp/learnhub-certs; \
    useradd --uid 1000 --user-group --no-create-home --home-dir /srv/jupyterhub jovyan; \
    mkdir -p /srv/jupyterhub; \
    chown 1000:1000 /srv/jupyterhub; \
    /opt/learnhub/venv/bin/python -c 'import hub.kube_spawner, grader.kube_sandbox, pycurl, kubernetes_asyncio'

ENV PATH=/opt/learnhub/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1
WORKDIR /srv/jupyterhub
USER 1000
EXPOSE 8081
CMD ["jupyterhub", "--config", "/usr/local/etc/jupyterhub/jupyterhub_config.py"]
