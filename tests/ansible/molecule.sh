#!/usr/bin/env bash
# Runs the Ansible roles' Molecule scenario (ansible/molecule/default) on a local systemd container.
#
# Works on a fresh Debian 12 machine without systemd as PID 1 and without a container registry: its
# own dockerd and the local images (tests/ansible/docker-host.sh), then `molecule test`. Everything
# it starts is stopped on exit, failure included.
#
# Environment: MOLECULE_IMAGE (a systemd image to test on instead of the local bookworm one, e.g.
# an Ubuntu 24.04 one from a registry: it needs python3, sudo and ca-certificates), MOLECULE_TIMEOUT_S
# (default 2400), MOLECULE_ARGS (extra `molecule test` arguments).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv_bin="$repo/.venv/bin"
timeout_s=${MOLECULE_TIMEOUT_S:-2400}
log() { printf '[molecule.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# shellcheck source=tests/ansible/docker-host.sh
source "$repo/tests/ansible/docker-host.sh"

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$dockerd_pid" ]]; then
        log "removing test containers"
        docker ps -aq --filter label=owner=molecule | xargs -r docker rm -f --volumes >/dev/null 2>&1
        docker volume prune -f >/dev/null 2>&1
    fi
    docker_host_cleanup
    log "exit $rc"
    exit "$rc"
}
trap cleanup EXIT INT TERM

[[ -n "$kafka_version" ]] || { log "no Kafka jars in .cache/jars/kafka: run make jars"; exit 1; }
start=$SECONDS
install_packages
start_dockerd
build_host_image
build_kafka_image
log "images ready after $((SECONDS - start)) s"

# pip's and Maven's caches of this machine are shared with the test host, so the pipeline role's
# virtualenv (pyspark is ~450 MB) and the connector jars install without downloading again.
PIP_CACHE_HOST=$("$venv_bin/pip" cache dir 2>/dev/null || echo "$cache/pip")
M2_REPO_HOST="${HOME}/.m2/repository"
mkdir -p "$PIP_CACHE_HOST" "$M2_REPO_HOST"
export PIP_CACHE_HOST M2_REPO_HOST
export MOLECULE_IMAGE="$host_image"
# The pipeline role copies the app from here: a snapshot, so that edits made in the checkout while
# the scenario runs cannot make its idempotence step fail.
export PIPELINE_SOURCE_DIR="$run/source"
mkdir -p "$PIPELINE_SOURCE_DIR/.cache/jars"
cp -r "$repo/app" "$repo/pyproject.toml" "$repo/requirements.txt" "$PIPELINE_SOURCE_DIR/"
find "$PIPELINE_SOURCE_DIR" -name __pycache__ -prune -exec rm -rf {} +
export PATH="$venv_bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

cd "$repo/ansible"
log "molecule test (limit ${timeout_s} s)"
# shellcheck disable=SC2086
timeout --kill-after=60 "$timeout_s" molecule test ${MOLECULE_ARGS:-}
log "molecule passed in $((SECONDS - start)) s"
