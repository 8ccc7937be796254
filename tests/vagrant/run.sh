#!/usr/bin/env bash
# `make vagrant-test`: the Vagrantfile for real, on a host without VirtualBox or KVM.
#   1. the fast checks (tests/vagrant/test_vagrantfile.py: seed settings, overrides, vagrant validate);
#   2. `vagrant up --provider=libvirt` of a small Debian bookworm box (built locally, cached in
#      .cache/vagrant) under QEMU software emulation, with a small VM and data disk and the producer
#      replaying the bundled trades (no internet here);
#   3. tests/vagrant/verify.sh checks the provisioned guest from this host;
#   4. `vagrant destroy -f`, whatever happened, and the libvirt daemons this script started are stopped.
# Every step is time-bounded. Logs and timings go to results/vagrant/.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cache="$repo/.cache/vagrant"
results="$repo/results/vagrant"
mkdir -p "$cache/run" "$results"
up_timeout=${VAGRANT_TEST_UP_TIMEOUT:-7200}
t0=$(date +%s)
stamp() { echo "[vagrant-test +$(($(date +%s) - t0))s] $*"; }

stamp "host packages"
bash tests/vagrant/host-deps.sh full

stamp "fast checks of the Vagrantfile"
.venv/bin/python -m pytest tests/vagrant -q -p no:cacheprovider

# Without systemd on this host nobody starts the libvirt daemons: start them, and stop only those.
started=()
start_daemon() {
    local name=$1
    shift
    if pgrep -x "$name" >/dev/null; then
        return 0
    fi
    "$name" -d -p "$cache/run/$name.pid" "$@"
    started+=("$name")
}
stop_daemons() {
    local name pid
    for name in "${started[@]}"; do
        pid=$(cat "$cache/run/$name.pid" 2>/dev/null || true)
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
}

export VAGRANT_CHECKPOINT_DISABLE=1
# Debian's Vagrant is older than the users' 2.4.2 minimum, which VirtualBox 7.1 needs and this
# libvirt run does not. Set before the first vagrant command: every one of them (box add, destroy)
# reads the Vagrantfile and stops at its version requirement.
export TELEMETRY_VM_VAGRANT_REQUIREMENT=">= 2.3.4"
export VAGRANT_HOME="$cache/home"
export VAGRANT_DEFAULT_PROVIDER=libvirt
export LIBVIRT_DEFAULT_URI=qemu:///system

# What the guest knew when something failed: the services' journals and the broker container.
guest_diagnostics() {
    local units="kafka telemetry-producer telemetry-processing telemetry-dashboard"
    # SIGQUIT makes the job's JVM print every thread's stack to its stdout, the journal: the guest
    # has a JRE, without jcmd or jstack. The brackets keep pkill off this very command line.
    timeout 300 vagrant ssh -c "sudo systemctl --no-pager --failed; sudo docker ps -a;
        sudo pkill -QUIT -f 'deploy[.]SparkSubmit' && sleep 5;
        sudo docker logs --tail 200 kafka 2>&1; for u in $units; do sudo journalctl -u \$u --no-pager -n 1000; done" \
        >"$results/guest-diagnostics.log" 2>&1 || true
    echo "guest diagnostics: $results/guest-diagnostics.log" >&2
}

cleanup() {
    local rc=$?
    # A signal arrived while vagrant up ran: stop it (timeout passes the TERM on, and KILLs after
    # 120 s) before destroying the VM under it.
    if [[ -n "${up_job:-}" ]] && kill -0 "$up_job" 2>/dev/null; then
        pkill -TERM -P $$ -x timeout || true
        wait "$up_job" || true
    fi
    if [[ "$rc" != 0 ]]; then
        guest_diagnostics
    fi
    stamp "vagrant destroy -f"
    timeout 600 vagrant destroy -f >"$results/destroy.log" 2>&1 || {
        echo "vagrant destroy failed, see $results/destroy.log" >&2
        rc=1
    }
    # The domain name vagrant-libvirt gives this checkout's machine; gone after a good destroy.
    if virsh dominfo "$(basename "$repo")_default" >/dev/null 2>&1; then
        virsh destroy "$(basename "$repo")_default" >/dev/null 2>&1 || true
        virsh undefine --remove-all-storage "$(basename "$repo")_default" >/dev/null 2>&1 || true
        rc=1
    fi
    bash vagrant/libvirt-data-disk.sh delete "$LIBVIRT_DEFAULT_URI" default "$(basename "$repo")-kafka-data.raw" ||
        true
    stop_daemons
    stamp "done, exit $rc (total $(($(date +%s) - t0)) s)"
    echo "wall_s=$(($(date +%s) - t0)) rc=$rc" >"$results/summary.txt"
    exit "$rc"
}
trap cleanup EXIT
# A signal (Ctrl-C, an outer timeout) ends the script through the EXIT trap, so the VM is destroyed.
trap 'exit 130' INT TERM

stamp "libvirt daemons"
start_daemon virtlogd
start_daemon libvirtd
for _ in $(seq 30); do
    virsh uri >/dev/null 2>&1 && break
    sleep 1
done
virsh uri >/dev/null

stamp "test box (cached in $cache/box)"
timeout 1200 bash vagrant/box/build.sh "$cache/box"
box_name=telemetry/bookworm-test
if [[ "$(cat "$cache/box.added" 2>/dev/null)" != "$(cat "$cache/box/box.key")" ]]; then
    vagrant box add --force --name "$box_name" "$cache/box/telemetry-bookworm.box" >"$results/box-add.log"
    # A changed box must not be shadowed by the volume vagrant-libvirt uploaded from the old one.
    for vol in $(virsh vol-list default 2>/dev/null | awk '/telemetry-VAGRANTSLASH-bookworm-test/ {print $1}'); do
        virsh vol-delete --pool default "$vol" >/dev/null
    done
    cp "$cache/box/box.key" "$cache/box.added"
fi

# A port nobody else on this shared host is using, for the dashboard's forward.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kafka_image=$(cat "$cache/box/kafka-image")

# The guest is kept small (software emulation is ~6x slower than the host, and the host is shared);
# the seed's sizes stay the defaults and are checked by the fast tests above. Two vCPUs: with one,
# the broker was starved of CPU under emulation and never became healthy in 30 minutes.
export TELEMETRY_VM_BOX="$box_name"
# A box added from a file has version 0.
export TELEMETRY_VM_BOX_VERSION=0
export TELEMETRY_VM_MEMORY_MB=${TELEMETRY_VM_MEMORY_MB:-4096}
export TELEMETRY_VM_CPUS=${TELEMETRY_VM_CPUS:-2}
export TELEMETRY_VM_DATA_DISK_GB=${TELEMETRY_VM_DATA_DISK_GB:-2}
export TELEMETRY_VM_LIBVIRT_DRIVER=${TELEMETRY_VM_LIBVIRT_DRIVER:-qemu}
export TELEMETRY_VM_PRODUCER_SOURCE=replay
export TELEMETRY_VM_DASHBOARD_HOST_PORT="$port"
# The box's Kafka image (no registry here), heaps sized to the small guest, a start timeout for a
# JVM under emulation (the role's 180 s ran out in the first measured run), connector jars from the
# checkout (`make jars`) rather than Maven inside the guest. The broker's session with its own
# controller outlasts the 30 s stalls an emulated JVM has on a busy host (at the default 9 s the
# broker fenced itself and every client lost its leader), and the offsets topic has 4 partitions
# instead of 50: enough for the test's three consumer groups, and fewer for the emulated broker to
# create and load.
export TELEMETRY_VM_ANSIBLE_EXTRA_VARS
TELEMETRY_VM_ANSIBLE_EXTRA_VARS=$(
    cat <<EOF
{"kafka_image": "$kafka_image", "kafka_image_pull": false, "kafka_heap_opts": "-Xms384m -Xmx384m",
 "kafka_start_timeout_s": 1800,
 "kafka_server_properties": {"broker.session.timeout.ms": 60000, "broker.heartbeat.interval.ms": 6000,
                             "offsets.topic.num.partitions": 4},
 "pipeline_jars_source": "controller",
 "pipeline_settings": {"spark_driver_memory": "768m"},
 "pipeline_memory_max": {"producer": "512M", "processing": "2G", "dashboard": "768M"}}
EOF
)

stamp "vagrant up --provider=libvirt (timeout ${up_timeout}s)"
up_start=$(date +%s)
# Each line stamped with the host's clock: where the time goes under emulation. A progress bar's
# redraws (erase-line escapes) are cut down to the last one.
stamp_lines() { while IFS= read -r line; do printf '%(%T)T %s\n' -1 "${line##*$'\e[K'}"; done; }
# In the background, because bash runs a trap only after the foreground command ends: a TERM now
# reaches the EXIT trap at once.
timeout -k 120 "$up_timeout" vagrant up --provider=libvirt 2>&1 | stamp_lines >"$results/up.log" &
up_job=$!
if ! wait "$up_job"; then
    tail -40 "$results/up.log" >&2
    stamp "vagrant up failed after $(($(date +%s) - up_start)) s, see $results/up.log"
    exit 1
fi
stamp "vagrant up took $(($(date +%s) - up_start)) s"
echo "up_s=$(($(date +%s) - up_start))" >"$results/up-time.txt"

stamp "verify"
verify_start=$(date +%s)
timeout 2100 bash tests/vagrant/verify.sh "$port" /dev/vdb "$(basename "$repo")-kafka-data.raw" \
    "$TELEMETRY_VM_DATA_DISK_GB" 2>&1 | tee "$results/verify.log"
stamp "verified in $(($(date +%s) - verify_start)) s"
