#!/usr/bin/env bash
# T-12h (launch cutover runbook, Section 2): validate every deployment profile of deploy/.
#
#   deploy/tools/validate-profiles.sh            # from anywhere; paths are relative to this checkout
#
# Compose profiles: `docker compose [--env-file ENV] -f deploy/compose/docker-compose.<p>.yaml config`
# (ENV: deploy/compose/<p>.env when it exists).  Helm profiles: `helm lint` and `helm template` of
# deploy/helm/stellaops with each values-<p>.yaml.  Without a helm CLI, the real Helm v4 library
# (PyPI helm-python-sdk) lints and renders them instead and every rendered manifest is validated
# against the Kubernetes schemas kubernetes-validate bundles: deploy/tools/helm-validate.py, run by
# ${PYTHON:-python3} when that python imports helm_python and kubernetes_validate.  A tool that is not
# installed is skipped, and said so, as the upstream script does ("validated where tooling was
# available").  VALIDATE_PROFILES_OUT=DIR: the Helm library's renderings go to DIR/<profile>.yaml.
#
# One line per profile on stdout, for people and for the runbook's check:
#   validate-profiles: deploy/compose/docker-compose.prod.yaml: ok
#   validate-profiles: deploy/helm/stellaops/values-prod.yaml: FAILED (helm lint)
#   validate-profiles: deploy/helm/stellaops/values-prod.yaml: ok (Helm library)
#   validate-profiles: deploy/helm/stellaops/values-prod.yaml: FAILED (kubernetes schema: templates/...)
#   validate-profiles: deploy/helm/stellaops/values-stage.yaml: skipped (helm is not installed)
# The tools' own output goes to stderr.  Exit 1 when any profile FAILED, else 0.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 2
failed=0
err=$(mktemp "${TMPDIR:-/tmp}/validate-profiles.XXXXXX") || exit 2
trap 'rm -f "$err"' EXIT

report() { printf 'validate-profiles: %s: %s\n' "$1" "$2"; }

compose_ready=""
if ! command -v docker >/dev/null 2>&1; then
    compose_why="docker is not installed"
elif ! docker compose version >/dev/null 2>&1; then
    compose_why="the docker compose v2 plugin is not installed"
else
    compose_ready=yes
fi

for file in deploy/compose/docker-compose.*.yaml; do
    [ -e "$file" ] || continue
    if [ -z "$compose_ready" ]; then
        report "$file" "skipped ($compose_why)"
        continue
    fi
    profile=${file#deploy/compose/docker-compose.}
    profile=${profile%.yaml}
    env_args=()
    [ -f "deploy/compose/$profile.env" ] && env_args=(--env-file "deploy/compose/$profile.env")
    echo "→ docker compose ${env_args[*]} -f $file config" >&2
    if docker compose "${env_args[@]}" -f "$file" config >/dev/null 2>"$err"; then
        report "$file" ok
    else
        cat "$err" >&2
        report "$file" "FAILED (docker compose config: $(tail -n 1 "$err"))"
        failed=1
    fi
done

python=${PYTHON:-python3}
helm_library=""
# installed, not imported: importing kubernetes_validate loads jsonschema (~1.5 s here), which
# helm-validate.py does once per profile anyway
if ! command -v helm >/dev/null 2>&1 && command -v "$python" >/dev/null 2>&1 &&
        "$python" -c 'import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, sys.argv[1:])))' \
            helm_python kubernetes_validate >/dev/null 2>&1; then
    helm_library=yes
fi

chart=deploy/helm/stellaops
for values in "$chart"/values-*.yaml; do
    [ -e "$values" ] || continue
    if [ -n "$helm_library" ]; then
        out_args=()
        [ -n "${VALIDATE_PROFILES_OUT:-}" ] && out_args=(--out "$VALIDATE_PROFILES_OUT")
        echo "→ helm-validate.py $chart $values ${out_args[*]} (Helm library, $python)" >&2
        if "$python" "$here/helm-validate.py" "$chart" "$values" "${out_args[@]}" 2>"$err"; then
            cat "$err" >&2
            report "$values" "ok (Helm library)"
        else
            cat "$err" >&2
            first=$(sed -n "s|^helm-validate: $values: ||p" "$err" | head -n 1)
            report "$values" "FAILED (${first:-helm-validate.py: $(tail -n 1 "$err")})"
            failed=1
        fi
        continue
    fi
    if ! command -v helm >/dev/null 2>&1; then
        report "$values" "skipped (helm is not installed)"
        continue
    fi
    echo "→ helm lint $chart -f $values" >&2
    if ! helm lint "$chart" -f "$values" >&2; then
        report "$values" "FAILED (helm lint)"
        failed=1
        continue
    fi
    echo "→ helm template stellaops $chart -f $values" >&2
    if helm template stellaops "$chart" -f "$values" >/dev/null; then
        report "$values" ok
    else
        report "$values" "FAILED (helm template)"
        failed=1
    fi
done
exit "$failed"
