#!/usr/bin/env bash
# Build the LearnHub base image (Debian bookworm, minbase) without any container registry:
# debootstrap a root filesystem from the host's Debian mirror and `docker import` it.
#
# Usage: docker/base/bootstrap.sh [--force] [IMAGE]
#   IMAGE defaults to learnhub/base:bookworm (or $LEARNHUB_BASE_IMAGE).
#   --force rebuilds even if the image already exists.
set -euo pipefail

FORCE=0
IMAGE="${LEARNHUB_BASE_IMAGE:-learnhub/base:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,tini
FALLBACK_MIRROR=http://deb.debian.org/debian

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        -*) echo "bootstrap: unknown option: $arg" >&2; exit 2 ;;
        *) IMAGE="$arg" ;;
    esac
done

log() { echo "[bootstrap] $*"; }

if [[ $FORCE -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already exists; nothing to do (use --force to rebuild)"
    exit 0
fi

# debootstrap needs root (chroot, mknod); fail early with a clear message instead of midway.
if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: must run as root (debootstrap needs chroot)" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap not found; installing it with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
fi

# Pick the host's Debian mirror so the build works wherever the host's apt works (proxies,
# local mirrors). Both the one-line and the deb822 (.sources) formats are understood; the
# security archive and third-party repositories are not bookworm main mirrors, so skip them.
find_mirror() {
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        while read -r uri; do
            case "$uri" in
                *security*) continue ;;
                */debian|*/debian/) echo "${uri%/}"; return 0 ;;
            esac
        done < <(
            sed -n -E \
                -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
                -e 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n' | sed '/^$/d'
        )
    done
    return 1
}
MIRROR="$(find_mirror || echo "$FALLBACK_MIRROR")"
log "mirror: $MIRROR"

ROOTFS="$(mktemp -d /tmp/learnhub-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$ROOTFS"; }
trap cleanup EXIT

START=$(date +%s)
log "debootstrap --variant=minbase --include=$PACKAGES $SUITE $ROOTFS $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# Keep the image small: package lists, the .deb cache, man pages and docs are not needed at
# run time (the singleuser image installs Python packages with pip, not apt). The copyright
# files stay: the image is redistributed and they carry the packages' licences.
log "cleaning apt lists, caches and docs"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
find "$ROOTFS"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOTFS"/usr/share/doc -mindepth 1 -type d -empty -delete
# The host's resolv.conf / hostname leak in via debootstrap; Docker manages these at run time.
rm -f "$ROOTFS"/etc/resolv.conf "$ROOTFS"/etc/hostname
# Point apt in the image at the same mirror so later `apt-get install` in Dockerfiles works.
echo "deb $MIRROR $SUITE main" > "$ROOTFS"/etc/apt/sources.list

OLD_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "importing root filesystem as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . \
    | docker import --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' - "$IMAGE"
# A --force rebuild leaves the previous base untagged; drop it unless images still use it.
if [[ -n "$OLD_ID" ]] && [[ "$OLD_ID" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
    if docker image rm "$OLD_ID" >/dev/null 2>&1; then
        log "removed previous $IMAGE ($OLD_ID)"
    else
        log "previous $IMAGE ($OLD_ID) is still used by other images; kept"
    fi
fi

log "done: $IMAGE in $(( $(date +%s) - START ))s"
docker image ls "$IMAGE"
