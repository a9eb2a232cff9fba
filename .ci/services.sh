#!/usr/bin/env bash
# Brings up the real parts the integration tests use on a clean Debian machine:
# a Docker engine with BuildKit and a local Python base image, the buildx plugin
# for the tests that ask for it, and a second, newer engine. (sshd, the agents,
# the git server and the package index are started by the test session itself.)
# Safe to run again: every step checks whether its work is already done.
set -euo pipefail

BASE_IMAGE="${SBT_BASE_IMAGE:-securebuild-test/python:bookworm}"
CACHE_DIR="${SBT_CI_CACHE:-/var/cache/securebuild-ci}"
# A second, newer engine for what Docker 20.10 cannot do (an exported build
# cache, `docker build --check`): dockerd 28 on containerd 2 with the
# containerd image store, its own sockets and data roots (start_modern_engine).
MODERN_RUN="${SBT_MODERN_RUN:-/run/securebuild-ci/modern-engine}"
MODERN_BIN="$CACHE_DIR/modern-engine"
MODERN_DATA="${SBT_MODERN_DATA:-/var/lib/securebuild-ci/modern-engine}"

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
    command -v objdump >/dev/null || missing+=(binutils)
    # The awks and greps the template's scripts meet in base images.
    command -v gawk >/dev/null || missing+=(gawk)
    command -v mawk >/dev/null || missing+=(mawk)
    command -v busybox >/dev/null || missing+=(busybox)
    command -v runc >/dev/null || missing+=(runc)
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

unpack_debian_packages() {
    # unpack_debian_packages DIR "SUITE..." PACKAGE...: the packages from the first
    # suite of the machine's Debian mirror that has them all, unpacked into DIR with
    # dpkg -x (nothing is installed); prints that suite.
    local dir="$1" suites="$2" mirror arch suite files="" wanted f
    shift 2
    wanted="$(printf '%s\n' "$@" | sed 's/[.]/[.]/g' | paste -sd '|')"
    mirror="$(apt_mirror)"
    mirror="${mirror%/}"
    arch="$(dpkg --print-architecture)"
    for suite in $suites; do
        files="$(curl -fsS "$mirror/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc | awk -v want="^($wanted)\$" '
            /^Package: / { p = $2 }
            /^Filename: / { if (p ~ want && !(p in f)) f[p] = $2 }
            END { for (p in f) print f[p] }')" || files=""
        [ "$(printf '%s\n' "$files" | grep -c .)" -eq "$#" ] && break
        files=""
    done
    if [ -z "$files" ]; then
        echo "ci: $* not all found in $suites on $mirror" >&2
        return 1
    fi
    mkdir -p "$dir"
    for f in $files; do
        curl -fsS "$mirror/$f" -o "$dir/$(basename "$f")"
        dpkg -x "$dir/$(basename "$f")" "$dir/root"
    done
    echo "$suite"
}

fetch_buildx() {
    # The buildx CLI plugin, kept out of the system's plugin path: only tests
    # that point DOCKER_CONFIG at $CACHE_DIR/buildx use it (the rest of the
    # suite keeps the classic client). bookworm has no docker-buildx package;
    # trixie's is a static binary that runs here.
    local plugin="$CACHE_DIR/buildx/cli-plugins/docker-buildx"
    [ -x "$plugin" ] && return
    local unpacked
    unpacked="$(mktemp -d)"
    unpack_debian_packages "$unpacked" trixie docker-buildx >/dev/null || exit 1
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$unpacked/root/usr/libexec/docker/cli-plugins/docker-buildx" "$plugin"
    rm -rf "$unpacked"
    echo "ci: buildx plugin in $plugin"
}

glibc_ok() {
    # Whether binary $1 runs with this machine's glibc (forky's may need a newer one).
    local need have
    have="$(ldd --version | awk 'NR==1 {print $NF}')"
    need="$(objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
    [ -z "$need" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -n 1)" = "$have" ] \
        || { echo "ci: $1 needs glibc $need, this machine has $have" >&2; return 1; }
}

fetch_modern_engine() {
    # dockerd 28, containerd 2, buildx 0.29 and tini from Debian forky (else sid),
    # unpacked into the CI cache, never installed: bookworm keeps its own packages.
    # runc stays bookworm's (forky's needs glibc 2.38).
    [ -x "$MODERN_BIN/bin/dockerd" ] && [ -x "$MODERN_BIN/cli-plugins/docker-buildx" ] && return
    local unpacked suite f
    unpacked="$(mktemp -d)"
    suite="$(unpack_debian_packages "$unpacked" "forky sid" \
        docker.io containerd docker-buildx tini-static)" || exit 1
    for f in usr/sbin/dockerd usr/bin/containerd usr/bin/containerd-shim-runc-v2 \
             usr/libexec/docker/cli-plugins/docker-buildx; do
        glibc_ok "$unpacked/root/$f" || exit 1
    done
    mkdir -p "$MODERN_BIN/bin" "$MODERN_BIN/cli-plugins"
    install -m 0755 "$unpacked/root/usr/sbin/dockerd" "$unpacked/root/usr/bin/containerd" \
        "$unpacked/root/usr/bin/containerd-shim-runc-v2" "$unpacked/root/usr/bin/ctr" "$MODERN_BIN/bin/"
    install -m 0755 "$unpacked/root/usr/bin/tini-static" "$MODERN_BIN/bin/docker-init"
    install -m 0755 "$unpacked/root/usr/libexec/docker/cli-plugins/docker-buildx" \
        "$MODERN_BIN/cli-plugins/docker-buildx"
    rm -rf "$unpacked"
    echo "ci: modern engine from $suite: $("$MODERN_BIN/bin/dockerd" --version)"
}

start_modern_engine() {
    local host="unix://$MODERN_RUN/docker.sock"
    if DOCKER_HOST="$host" /usr/bin/docker info >/dev/null 2>&1; then
        return
    fi
    # The cached binaries first on PATH (containerd's shim, docker-init); runc is the system's.
    local path="$MODERN_BIN/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    mkdir -p "$MODERN_RUN/config" "$MODERN_DATA"
    ln -sfn "$MODERN_BIN/cli-plugins" "$MODERN_RUN/config/cli-plugins"
    printf '%s\n' 'version = 3' \
        "root = \"$MODERN_DATA/containerd\"" \
        "state = \"$MODERN_RUN/containerd-state\"" \
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]' \
        '[grpc]' "  address = \"$MODERN_RUN/containerd.sock\"" \
        '[ttrpc]' "  address = \"$MODERN_RUN/containerd.sock.ttrpc\"" >"$MODERN_RUN/containerd.toml"
    # The containerd image store is what lets buildx's docker driver export a cache.
    echo '{"features": {"containerd-snapshotter": true}}' >"$MODERN_RUN/daemon.json"
    echo "ci: starting the modern engine at $host"
    PATH="$path" nohup "$MODERN_BIN/bin/containerd" --config "$MODERN_RUN/containerd.toml" \
        >>/var/log/securebuild-modern-containerd.log 2>&1 </dev/null &
    for _ in $(seq 1 100); do
        "$MODERN_BIN/bin/ctr" --address "$MODERN_RUN/containerd.sock" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    PATH="$path" nohup "$MODERN_BIN/bin/dockerd" --host "$host" --data-root "$MODERN_DATA/docker" \
        --exec-root "$MODERN_RUN/exec" --pidfile "$MODERN_RUN/docker.pid" \
        --containerd "$MODERN_RUN/containerd.sock" --config-file "$MODERN_RUN/daemon.json" \
        --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        >>/var/log/securebuild-modern-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 150); do
        DOCKER_HOST="$host" /usr/bin/docker info >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! DOCKER_HOST="$host" /usr/bin/docker info >/dev/null 2>&1; then
        echo "ci: the modern engine did not come up; its logs:" >&2
        tail -n 20 /var/log/securebuild-modern-containerd.log /var/log/securebuild-modern-dockerd.log >&2
        exit 1
    fi
    if ! DOCKER_HOST="$host" /usr/bin/docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        /usr/bin/docker save "$BASE_IMAGE" | DOCKER_HOST="$host" /usr/bin/docker load >/dev/null
    fi
}

install_packages
start_dockerd
build_base_image
fetch_buildx
fetch_modern_engine
start_modern_engine
echo "ci: engines ready, base image $BASE_IMAGE"
