"""Build the stock single-user image (``benchmarks/stock/Dockerfile``) if it is missing.

Uses LearnHub's own build helpers (``hub/images.py``: docker-py's low-level streaming build,
the host CA bundle, the machine-wide build lock) so the stock and the LearnHub image are built
the same way from the same offline base. The image carries a ``learnhub.context-hash`` label of
its Dockerfile: editing the Dockerfile rebuilds it, a re-bootstrapped base image does not.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from hub.images import (
    DEFAULT_BASE_IMAGE,
    HASH_LABEL,
    ImageBuildError,
    ImageSpec,
    Log,
    _build_lock,
    _build_one,
    _connect,
    _host_ca_bundle,
    _image_labels,
)

STOCK_IMAGE = "learnhub-bench/stock-singleuser:latest"
HERE = Path(__file__).resolve().parent


def dockerfile_hash(base_image: str) -> str:
    digest = hashlib.sha256((HERE / "Dockerfile").read_bytes())
    digest.update(base_image.encode())
    return digest.hexdigest()


def ensure_stock_image(
    *, base_image: str = DEFAULT_BASE_IMAGE, force: bool = False, log: Log = print
) -> str:
    """Return the stock image's id, building it first when it is missing or outdated."""
    wanted = dockerfile_hash(base_image)
    client = _connect()
    try:
        with _build_lock(log):
            existing = _image_labels(client, STOCK_IMAGE)
            if existing and existing[1].get(HASH_LABEL) == wanted and not force:
                log(f"{STOCK_IMAGE}: present ({wanted[:12]})")
                return existing[0]
            if _image_labels(client, base_image) is None:
                raise ImageBuildError(
                    f"base image {base_image} is missing: build LearnHub's images first "
                    "(`learnhub images build`, which bootstraps it offline)"
                )
            spec = ImageSpec(STOCK_IMAGE, HERE, {"BASE_IMAGE": base_image})
            start = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="learnhub-bench-stock-") as tmp:
                ctx = Path(tmp)
                shutil.copy2(HERE / "Dockerfile", ctx / "Dockerfile")
                (ctx / "certs").mkdir()
                shutil.copyfile(_host_ca_bundle(), ctx / "certs" / "ca-certificates.crt")
                log(f"{STOCK_IMAGE}: building (pip install from PyPI, a few minutes)")
                image_id = _build_one(client, ctx, spec, wanted, nocache=force, log=log)
            log(f"{STOCK_IMAGE}: built {image_id[:19]} in {time.monotonic() - start:.0f}s")
            return image_id
    finally:
        client.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the stock benchmark image if missing.")
    parser.add_argument("--force", action="store_true")
    ensure_stock_image(force=parser.parse_args().force)
