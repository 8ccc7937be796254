#!/usr/bin/env bash
# Checks, from the host, that `vagrant up` gave a working appliance: Kafka on the pre-allocated data
# disk, the three pipeline units, trades flowing through to aggregates, and the dashboard answering
# through the forwarded port on the host's loopback only. Run from the project directory by run.sh
# (libvirt: with the volume, whose allocation is checked too) and docker/run.sh (a loop device).
#
#   verify.sh HOST_PORT DATA_DISK_SOURCE [DATA_VOLUME DATA_DISK_GB]
set -euo pipefail

port=${1:?usage: verify.sh HOST_PORT DATA_DISK_SOURCE [DATA_VOLUME DATA_DISK_GB]}
disk_source=${2:?missing DATA_DISK_SOURCE}
volume=${3:-}
disk_gb=${4:-}
# Guest CPU is emulated: measured there, Spark took 6.5-18 min to start its queries and 3 min or
# more for its first micro-batch; the first windows reached Kafka 12 min after the units started in
# one run and not within 25 min in the next.
deadline=$(($(date +%s) + ${VERIFY_TIMEOUT_S:-1800}))
failures=0

# check "WHAT" COMMAND...: reports WHAT as passed or failed by COMMAND's exit status.
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}
# One `vagrant ssh-config`, then plain ssh: each `vagrant ssh` would start Vagrant again.
ssh_config=$(mktemp)
trap 'rm -f "$ssh_config"' EXIT
vagrant ssh-config >"$ssh_config"
guest() { ssh -F "$ssh_config" -o LogLevel=ERROR default "$1"; }
# until_true SECONDS_BETWEEN COMMAND...: retries until it succeeds or the deadline passes.
until_true() {
    local pause=$1
    shift
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep "$pause"
    done
}

# 1. Services, running since they were started: a unit that crashed and was restarted is active too.
for unit in docker kafka telemetry-producer telemetry-processing telemetry-dashboard; do
    state=$(guest "systemctl is-active $unit.service" | tr -d '\r' || true)
    check "$unit.service is active (is '$state')" test "$state" = active
done
restarts_none() {
    local unit restarts
    for unit in kafka telemetry-producer telemetry-processing telemetry-dashboard; do
        restarts=$(guest "systemctl show --property NRestarts --value $unit.service" | tr -d '\r')
        if [[ "$restarts" != 0 ]]; then
            echo "     $unit.service restarted $restarts time(s)"
            return 1
        fi
    done
}

# 2. Kafka on the data disk, and the libvirt data disk fully allocated on the host.
source=$(guest "findmnt -n -o SOURCE /var/lib/kafka" | tr -d '\r' || true)
check "/var/lib/kafka is mounted from the data disk $disk_source (is '$source')" test "$source" = "$disk_source"
data_dir=$(guest "sudo ls /var/lib/kafka/data" | tr -d '\r' || true)
check "Kafka's partitions live on the data disk" grep -qx 'raw_crypto_trades-0' <<<"$data_dir"
if [[ -n "$volume" ]]; then
    read -r capacity allocation < <(virsh vol-info --bytes --pool default "$volume" |
        awk '/^Capacity:/ {c=$2} /^Allocation:/ {a=$2} END {print c, a}')
    want=$((disk_gb * 1024 * 1024 * 1024))
    check "data disk capacity is $want bytes (is $capacity)" test "$capacity" = "$want"
    check "data disk fully allocated ($allocation of $capacity bytes)" test "$allocation" -ge "$capacity"
fi

# 3. Trades flow end to end: the replayed trades reach the raw topic and windows come out of Spark.
# The sum of a topic's end offsets, read by the pipeline's own Kafka client in the guest: a Kafka
# command-line tool would start a JVM for every poll, which takes a minute of emulated CPU beside
# the broker it is asking.
end_offsets() {
    guest "/opt/telemetry/venv/bin/python - $1" <<'EOF' | tr -d '\r' | tail -1
import sys

from kafka import KafkaConsumer, TopicPartition

topic = sys.argv[1]
consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9092", api_version_auto_timeout_ms=30000)
partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
print(sum(consumer.end_offsets(partitions).values()) if partitions else 0)
EOF
}
has_records() {
    local n
    n=$(end_offsets "$1" || true)
    echo "     $1: ${n:-no answer} records"
    [[ "$n" =~ ^[0-9]+$ ]] && ((n > 0))
}
check "trades in raw_crypto_trades" until_true 20 has_records raw_crypto_trades
check "windows in aggregated_crypto_stats" until_true 30 has_records aggregated_crypto_stats

# 4. The dashboard through the forwarded port, on the host's loopback and nowhere else.
http_code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$port$1" || true; }
health_ok() { test "$(http_code /_stcore/health)" = 200; }
check "dashboard health 200 on 127.0.0.1:$port" until_true 10 health_ok
code=$(http_code /)
check "dashboard page 200 on 127.0.0.1:$port (answered $code)" test "$code" = 200
# Last, after Spark's first batches: the moment a crash under load would have happened.
check "no service crashed and was restarted" restarts_none
listeners=$(ss -Hltn "sport = :$port" | awk '{print $4}' | sort -u | tr '\n' ' ')
check "forward listens on 127.0.0.1:$port only (listeners: $listeners)" test "$listeners" = "127.0.0.1:$port "

if ((failures)); then
    echo "$failures check(s) failed"
    guest "sudo journalctl -u kafka -u telemetry-producer -u telemetry-processing -u telemetry-dashboard -n 60 --no-pager" || true
    exit 1
fi
echo "all checks passed"
