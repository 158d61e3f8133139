# The Stella Ops lab image: one image, every lab service (`--service NAME` picks one).
# Built by tools/dockerlab.sh build-images once per release; STELLAOPS_RELEASE is baked in
# and reported as `version` by every /healthz, so a release's image says what it is.
#
# BASE_IMAGE: python:3.11-slim where a registry is reachable; here the imported debootstrap
# rootfs (stellaops-lab-base:bookworm) that already holds the Debian python3 packages.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN python3 -c "import tornado, cryptography, jwt, httpx" 2>/dev/null \
    || python3 -m pip install --no-cache-dir "tornado>=6.2" "cryptography>=38" "pyjwt>=2.6" "httpx>=0.23"
ENV PYTHONPATH=/opt/stellaops PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/stellaops
COPY samples/ /opt/stellaops/samples/
COPY cutover_lib/ /opt/stellaops/cutover_lib/
COPY stellaops_lab/ /opt/stellaops/stellaops_lab/
# compiled once here: with PYTHONDONTWRITEBYTECODE (and a fresh container layer each start) every
# service start and every `docker exec ... dotnet` would compile these modules again
RUN python3 -m compileall -q /opt/stellaops/cutover_lib /opt/stellaops/stellaops_lab
# The lab's stand-in for the scanner's own CLI, so that the runbook's Section 4.4 line
# `docker exec stellaops-scanner-web dotnet StellaOps.Scanner.WebService.dll health queue` runs
# as written (it answers that one command, from this container's scanner on port 8080).
RUN printf '%s\n' '#!/bin/sh' ': "${STELLAOPS_BACKEND_URL:=http://127.0.0.1:8080}"' 'export STELLAOPS_BACKEND_URL' \
        'exec python3 -m stellaops_lab.dotnet_standin "$@"' > /usr/local/bin/dotnet \
    && chmod 0755 /usr/local/bin/dotnet
VOLUME /var/lib/stellaops-lab
ENTRYPOINT ["python3", "-m", "stellaops_lab.serve"]
# last, so the two releases share every layer above
ARG STELLAOPS_RELEASE=2025.09.2
ENV STELLAOPS_RELEASE=${STELLAOPS_RELEASE}
LABEL org.opencontainers.image.title="stellaops-lab" org.opencontainers.image.version="${STELLAOPS_RELEASE}"
