#!/usr/bin/env bash
# `make vagrant-docker-test`: `vagrant up`'s own provisioning chain, in minutes, on a host without a
# hypervisor (CI's). The project's Vagrantfile runs unchanged on Vagrant's docker provider: a systemd
# container (Molecule's image plus sshd and a `vagrant` user, Dockerfile here) takes the VM's place,
# and this folder's Vagrantfile, loaded as Vagrant's home Vagrantfile, adds only the provider's
# container settings. So vagrant/install-ansible.sh, then ansible_local with ansible/site.yml and the
# Vagrantfile's extra variables, run as a user's `vagrant up` runs them; tests/vagrant/verify.sh then
# checks the result from this host: Kafka on the data disk, the units active, windows in the
# aggregates topic, the dashboard answering 200 on the forwarded port on 127.0.0.1 only. The
# producer replays the bundled trades (nothing reaches Binance). What this cannot check (VirtualBox,
# the box's controllers, Ubuntu) is in vagrant/README.md.
#
# Starts a dockerd: run it under `flock /work/wt/docker.lock` where other sessions may start one.
# Everything it starts is stopped on exit, failure included. Logs and timings: results/vagrant-docker/.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../../.." && pwd)
here="$repo/tests/vagrant/docker"
results="$repo/results/vagrant-docker"
up_timeout=${VAGRANT_DOCKER_UP_TIMEOUT:-1200}
t0=$SECONDS
log() { printf '[vagrant-docker %(%H:%M:%S)T +%ss] %s\n' -1 "$((SECONDS - t0))" "$*" >&2; }
mkdir -p "$results"
# shellcheck source=tests/ansible/docker-host.sh
source "$repo/tests/ansible/docker-host.sh"
project="$run/project/$(basename "$repo")"
vagrant_image=local/vagrant-bookworm:latest
data_disk=""

export VAGRANT_CHECKPOINT_DISABLE=1
export VAGRANT_HOME="$run/vagrant-home"
export VAGRANT_CWD="$project"

cleanup() {
    local rc=$?
    set +e
    if [[ -d "$project/.vagrant" ]]; then
        log "vagrant destroy -f"
        timeout 900 vagrant destroy -f >"$results/destroy.log" 2>&1 || rc=1
    fi
    if [[ -n "$dockerd_pid" ]]; then
        docker ps -aq | xargs -r docker rm -f --volumes >/dev/null 2>&1
    fi
    docker_host_cleanup
    [[ -n "$data_disk" ]] && losetup -d "$data_disk"
    log "exit $rc (total $((SECONDS - t0)) s)"
    echo "wall_s=$((SECONDS - t0)) rc=$rc" >"$results/summary.txt"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -n "$kafka_version" ]] || { log "no Kafka jars in .cache/jars/kafka: run make jars"; exit 1; }
log "host packages"
bash "$repo/tests/vagrant/host-deps.sh" config
install_packages
start_dockerd
build_host_image
build_kafka_image
ctx="$run/vagrant-image"
cp -r "$here" "$ctx"
cp /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub "$ctx/vagrant.pub"
# This host's pip settings (its CA bundle): pip in the guest, install-ansible.sh's included, goes out
# through this host's egress. A VM's box would carry its own.
cp /etc/pip.conf "$ctx/pip.conf" 2>/dev/null || echo "[global]" >"$ctx/pip.conf"
docker build -q --network host -t "$vagrant_image" "$ctx" >/dev/null
log "images ready"

# A snapshot of the checkout, as the libvirt provider's rsync makes it (Vagrantfile): edits made while
# this runs cannot reach the guest, and the guest's writes never land in the checkout.
mkdir -p "$project"
rsync --archive --delete --copy-links --include=/.cache/jars/ --exclude=/.cache/* \
    --exclude=/.git/ --exclude=/.venv/ --exclude=/.vagrant/ --exclude=/.run/ --exclude=/results/ \
    --exclude=__pycache__/ --exclude='.*_cache/' "$repo/" "$project/"
mkdir -p "$VAGRANT_HOME"
cp "$here/Vagrantfile" "$VAGRANT_HOME/Vagrantfile"

# The Kafka data disk: a sparse file on a loop device, handed to the container (Vagrantfile here).
truncate -s 2G "$run/kafka-data.raw"
data_disk=$(losetup --find --show "$run/kafka-data.raw")
# Where the VirtualBox guest finds the disk, which is where the Vagrantfile tells os_tuning to look.
disk_guest=$(ruby -r "$project/vagrant/data_disk.rb" -e 'puts Telemetry::DataDisk::GUEST_DEVICE.fetch(:virtualbox)')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pip_cache=$("$repo/.venv/bin/pip" cache dir 2>/dev/null || echo "$cache/pip")
mkdir -p "$pip_cache"
export TELEMETRY_DOCKER_IMAGE="$vagrant_image"
export TELEMETRY_DOCKER_DATA_DISK="$data_disk"
# ansible_local's control node is the guest, where the kafka role reads the archive as `vagrant`.
chmod a+r "$KAFKA_IMAGE_ARCHIVE"
# pip's cache of this host for the pipeline role (pyspark is ~450 MB) and install-ansible.sh, and the
# Kafka image archive (no registry here).
export TELEMETRY_DOCKER_VOLUMES="$pip_cache:/var/cache/telemetry-pip:rw $pip_cache:/root/.cache/pip:rw
    $KAFKA_IMAGE_ARCHIVE:/var/cache/kafka-image.tar:ro"
# Debian's Vagrant is older than the users' 2.4.2 minimum, which VirtualBox 7.1 needs and this
# provider does not.
export TELEMETRY_VM_VAGRANT_REQUIREMENT=">= 2.3.4"
export TELEMETRY_VM_PRODUCER_SOURCE=replay
export TELEMETRY_VM_DASHBOARD_HOST_PORT="$port"
# Molecule's variables for a container host (ansible/molecule/default/molecule.yml): the local Kafka
# image, an open-file limit the container cannot raise, memory sized to a shared 2-core host; the
# connector jars come from the checkout (`make jars`), as in the libvirt test.
export TELEMETRY_VM_ANSIBLE_EXTRA_VARS
TELEMETRY_VM_ANSIBLE_EXTRA_VARS=$(
    cat <<JSON
{"kafka_image": "$KAFKA_IMAGE", "kafka_image_pull": false, "kafka_image_archive": "/var/cache/kafka-image.tar",
 "kafka_heap_opts": "-Xms384m -Xmx384m", "kafka_nofile_limit": 0, "pipeline_nofile_limit": 16384,
 "pipeline_jars_source": "controller",
 "pipeline_memory_max": {"producer": "512M", "processing": "2G", "dashboard": "768M"}}
JSON
)

log "vagrant up --provider=docker (timeout ${up_timeout}s)"
up_start=$SECONDS
stamp_lines() { while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done; }
timeout -k 60 "$up_timeout" vagrant up --provider=docker 2>&1 | stamp_lines >"$results/up.log" &
if ! wait $!; then
    tail -40 "$results/up.log" >&2
    log "vagrant up failed after $((SECONDS - up_start)) s, see $results/up.log"
    exit 1
fi
log "vagrant up took $((SECONDS - up_start)) s"

log "verify"
verify_start=$SECONDS
(cd "$project" && VERIFY_TIMEOUT_S=600 timeout 900 bash "$repo/tests/vagrant/verify.sh" "$port" "$disk_guest") 2>&1 |
    tee "$results/verify.log"
log "verified in $((SECONDS - verify_start)) s"
