#!/usr/bin/env bash
# Brings up the real parts the integration tests use on a clean Debian machine:
# a Docker engine with BuildKit and a local Python base image. (sshd, the agents,
# the git server and the package index are started by the test session itself.)
# Safe to run again: every step checks whether its work is already done.
set -euo pipefail

BASE_IMAGE="${SBT_BASE_IMAGE:-securebuild-test/python:bookworm}"
CACHE_DIR="${SBT_CI_CACHE:-/var/cache/securebuild-ci}"

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh-agent >/dev/null || missing+=(openssh-client)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
    command -v dbus-run-session >/dev/null || missing+=(dbus dbus-user-session)
    command -v git >/dev/null || missing+=(git)
    command -v curl >/dev/null || missing+=(curl)
    command -v xz >/dev/null || missing+=(xz-utils)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ci: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

start_dockerd() {
    if /usr/bin/docker info >/dev/null 2>&1; then
        return
    fi
    echo "ci: starting dockerd"
    mkdir -p /var/log
    # No bridge: the lab has no iptables; builds then use --network host.
    # Restarted if it dies: dockerd 20.10's BuildKit can panic ("failed to get
    # edge", moby/moby#42414) when concurrent builds share steps; one test may
    # then fail, but the rest of the run keeps an engine.
    nohup sh -c 'while :; do
            dockerd --bridge=none --iptables=false --ip-masq=false
            echo "ci: dockerd exited ($?); restarting" >&2
            sleep 1
        done' >>/var/log/securebuild-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        /usr/bin/docker info >/dev/null 2>&1 && return
        sleep 1
    done
    echo "ci: dockerd did not come up; its log:" >&2
    tail -n 40 /var/log/securebuild-dockerd.log >&2
    exit 1
}

apt_mirror() {
    # The machine's own Debian mirror; never written into the repository.
    local uri
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    if [ -z "$uri" ]; then
        uri="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    echo "$uri"
}

build_base_image() {
    if /usr/bin/docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    mkdir -p "$CACHE_DIR"
    local tarball="$CACHE_DIR/rootfs-bookworm.tar"
    if [ ! -s "$tarball" ]; then
        echo "ci: debootstrapping the base image (about a minute)"
        local rootfs
        rootfs="$(mktemp -d)"
        debootstrap --variant=minbase \
            --include=python3,python3-pip,python3-venv,python-is-python3,git,openssh-client,ca-certificates \
            bookworm "$rootfs" "$(apt_mirror)" >"$CACHE_DIR/debootstrap.log" 2>&1 \
            || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
        rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
    fi
    echo "ci: importing $BASE_IMAGE"
    /usr/bin/docker import "$tarball" "$BASE_IMAGE" >/dev/null
}

fetch_buildx() {
    # The buildx CLI plugin, kept out of the system's plugin path: only tests
    # that point DOCKER_CONFIG at $CACHE_DIR/buildx use it (the rest of the
    # suite keeps the classic client). bookworm has no docker-buildx package;
    # trixie's is a static binary that runs here.
    local plugin="$CACHE_DIR/buildx/cli-plugins/docker-buildx"
    [ -x "$plugin" ] && return
    local mirror arch filename deb unpacked
    mirror="$(apt_mirror)"
    arch="$(dpkg --print-architecture)"
    filename="$(curl -fsS "$mirror/dists/trixie/main/binary-$arch/Packages.xz" | xz -dc \
        | awk '/^Package: /{p=$2} /^Filename: /{if (p == "docker-buildx" && !f) f=$2} END{print f}')"
    if [ -z "$filename" ]; then
        echo "ci: no docker-buildx package found on $mirror" >&2
        exit 1
    fi
    deb="$(mktemp)"
    unpacked="$(mktemp -d)"
    curl -fsS "$mirror/$filename" -o "$deb"
    dpkg -x "$deb" "$unpacked"
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$unpacked/usr/libexec/docker/cli-plugins/docker-buildx" "$plugin"
    rm -rf "$deb" "$unpacked"
    echo "ci: buildx plugin in $plugin"
}

install_packages
start_dockerd
build_base_image
fetch_buildx
echo "ci: engine ready, base image $BASE_IMAGE"
