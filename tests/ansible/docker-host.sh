# shellcheck shell=bash
# A private Docker Engine and the local test images, for the checks that run the roles on a systemd
# container: Molecule (tests/ansible/molecule.sh) and the Vagrantfile's docker chain
# (tests/vagrant/docker/run.sh). Sourced, not run. Works on a fresh Debian 12 machine without
# systemd as PID 1 and without a container registry: installs Docker Engine and debootstrap from
# apt, starts its own dockerd, builds a Debian bookworm systemd image with debootstrap and an Apache
# Kafka image from the Maven Central jars (.cache/jars/kafka, `make jars`). Images are cached in
# .cache/molecule for the next run. Only one dockerd may run on the machine at a time: callers run
# under `flock /work/wt/docker.lock` where several sessions share it.
#
# The caller sets `repo` (the checkout) and a `log` function, sources this file, and calls
# docker_host_cleanup from its exit trap.

# Resolved: runc refuses a container rootfs under a symlink (a worktree's .cache may be one).
mkdir -p "$repo/.cache/molecule"
cache=$(cd "$repo/.cache/molecule" && pwd -P)
run=$(mktemp -d /tmp/telemetry-docker.XXXXXX)
kafka_version=$(sed -n 's/^kafka-clients-\(.*\)\.jar$/\1/p' <(ls "$repo/.cache/jars/kafka"))
kafka_image="local/kafka:${kafka_version}"
rootfs_image=local/bookworm-rootfs:latest
# The test host: MOLECULE_IMAGE (pulled by the build if it is not here) or the local bookworm one,
# plus this machine's CA certificates.
base_image=${MOLECULE_IMAGE:-$rootfs_image}
host_image=local/molecule-host:latest

# The roles write vm.* settings, which are not namespaced: put the host's back afterwards.
sysctl_keys=(vm.swappiness vm.max_map_count)
declare -A sysctl_saved=()
for key in "${sysctl_keys[@]}"; do sysctl_saved[$key]=$(sysctl -n "$key"); done

dockerd_pid=""
# Stops dockerd and puts the host back; containers are the caller's to remove first.
docker_host_cleanup() {
    if [[ -n "$dockerd_pid" ]]; then
        log "stopping dockerd ($dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$dockerd_pid" 2>/dev/null
    fi
    for key in "${sysctl_keys[@]}"; do sysctl -qw "$key=${sysctl_saved[$key]}"; done
    # dockerd leaves its default network namespace mounted under the exec root.
    grep -o " $run[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$run"
}

install_packages() {
    local need=()
    command -v dockerd >/dev/null || need+=(docker.io)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v iptables >/dev/null || need+=(iptables)
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

start_dockerd() {
    export DOCKER_HOST="unix://$run/docker.sock"
    dockerd --data-root "$cache/docker" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
        -H "$DOCKER_HOST" >"$run/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
        docker version >/dev/null 2>&1 && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    cat "$run/dockerd.log" >&2
    log "dockerd did not start"
    return 1
}

apt_mirror() {
    # The Debian mirror this machine already uses (never a hard-coded host).
    sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 \
        || true
}

build_host_image() {
    import_rootfs
    # Rebuilt every run (a second or two): it carries this machine's current CA certificates.
    local ctx="$run/host-image"
    cp -r "$repo/tests/ansible/images/host" "$ctx"
    mkdir -p "$ctx/ca"
    find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$ctx/ca/" \; 2>/dev/null || true
    docker build -q --build-arg "BASE_IMAGE=$base_image" -t "$host_image" "$ctx" >/dev/null
}

import_rootfs() {
    docker image inspect "$rootfs_image" >/dev/null 2>&1 && return 0
    local tarball="$cache/bookworm-systemd-rootfs.tar"
    if [[ ! -s "$tarball" ]]; then
        local mirror
        mirror=$(apt_mirror)
        if [[ -z "$mirror" ]]; then
            mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
        fi
        log "debootstrap bookworm from $mirror"
        debootstrap --variant=minbase \
            --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,ca-certificates,procps,curl \
            bookworm "$run/rootfs" "$mirror" >"$run/debootstrap.log" 2>&1 \
            || { tail -20 "$run/debootstrap.log" >&2; return 1; }
        tar -C "$run/rootfs" --exclude=./boot -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$run/rootfs"
    fi
    log "importing $rootfs_image"
    docker import "$tarball" "$rootfs_image" >/dev/null
}

build_kafka_image() {
    local archive="$cache/kafka-${kafka_version}-image.tar" context built
    # Rebuilt when tests/ansible/images/kafka changes: the image is labelled with its files' hash.
    context=$(cd "$repo/tests/ansible/images/kafka" && find . -type f -print0 | sort -z \
        | xargs -0 sha256sum | sha256sum | cut -c1-16)
    built=$(docker image inspect -f '{{ index .Config.Labels "telemetry.context" }}' "$kafka_image" 2>/dev/null) \
        || built=""
    if [[ "$built" != "$context" ]]; then
        log "building $kafka_image from the Maven Central jars"
        local ctx="$run/kafka-image"
        cp -r "$repo/tests/ansible/images/kafka" "$ctx"
        mkdir -p "$ctx/jars"
        cp "$repo"/.cache/jars/kafka/*.jar "$ctx/jars/"
        # app/localkafka/pom.xml resolves slf4j-api 1.7, which cannot bind log4j-slf4j2-impl, so the
        # broker would log nothing; the image gets the 2.x API that Kafka's own distribution ships.
        rm -f "$ctx"/jars/slf4j-api-1.*.jar
        mvn --batch-mode --quiet dependency:copy -Dartifact=org.slf4j:slf4j-api:2.0.16 \
            -DoutputDirectory="$ctx/jars"
        docker build -q --network host --build-arg "BASE_IMAGE=$rootfs_image" \
            --label "telemetry.context=$context" -t "$kafka_image" "$ctx" >/dev/null
        rm -f "$archive"
    fi
    if [[ ! -s "$archive" ]]; then
        docker save -o "$archive.tmp" "$kafka_image" && mv "$archive.tmp" "$archive"
    fi
    export KAFKA_IMAGE="$kafka_image" KAFKA_IMAGE_ARCHIVE="$archive"
}
