#!/usr/bin/env bash
# A root filesystem for a local Apache Kafka image, laid out like the official apache/kafka image
# (/opt/kafka/bin/*.sh, /opt/kafka/libs), for guests that cannot reach a container registry. It is
# made from Apache Kafka's own jars from Maven Central (the same ones the tests' LocalBroker runs,
# `make jars`), a Debian Java runtime, and launchers for the tools the kafka role calls. The test box
# imports it with `docker import` at boot.
#
#   kafka-image.sh KAFKA_JARS_DIR MIRROR OUT_TAR [DEB_CACHE_DIR]
set -euo pipefail

jars=${1:?usage: kafka-image.sh KAFKA_JARS_DIR MIRROR OUT_TAR}
mirror=${2:?missing MIRROR}
out=${3:?missing OUT_TAR}
debs=${4:-}
work=$(mktemp -d "$(dirname "$out")/kafka-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

compgen -G "$jars/kafka_2.13-*.jar" >/dev/null || {
    echo "no Kafka jars in $jars (run make jars)" >&2
    exit 1
}

debootstrap --variant=minbase ${debs:+--cache-dir="$debs"} --include=openjdk-17-jre-headless bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log"
    exit 1
}
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

install -d "$rootfs/opt/kafka/libs" "$rootfs/opt/kafka/bin" "$rootfs/opt/kafka/config"
cp "$jars"/*.jar "$rootfs/opt/kafka/libs/"

cat >"$rootfs/opt/kafka/config/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${env:KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.out.ref = STDOUT
EOF

# One launcher per official script name; each runs the class the official script runs.
cat >"$rootfs/opt/kafka/bin/kafka-run-class.sh" <<'EOF'
#!/bin/bash
# kafka-run-class.sh MAIN_CLASS [ARGS...]: the classpath and JVM settings of every launcher.
set -euo pipefail
main=$1
shift
heap=${KAFKA_HEAP_OPTS:--Xmx256m}
log_level=${KAFKA_LOG_LEVEL:-WARN}
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_OPTS hold several JVM options.
exec java $heap ${KAFKA_OPTS:-} -server -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' "$main" "$@"
EOF
# Short-lived tools (the health check runs one every 10 s) start on the quick JIT tier and the serial
# collector: under software emulation JVM start-up, not the work, is what they spend their time on.
launcher() {
    local name=$1 main=$2 level=$3 opts=${4:-}
    printf '#!/bin/bash\nexport KAFKA_LOG_LEVEL=${KAFKA_LOG_LEVEL:-%s}\nexport KAFKA_OPTS=${KAFKA_OPTS:-%s}\nexec /opt/kafka/bin/kafka-run-class.sh %s "$@"\n' \
        "$level" "$opts" "$main" >"$rootfs/opt/kafka/bin/$name"
}
tool_opts="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
launcher kafka-server-start.sh kafka.Kafka INFO
launcher kafka-storage.sh kafka.tools.StorageTool WARN "$tool_opts"
launcher kafka-topics.sh org.apache.kafka.tools.TopicCommand WARN "$tool_opts"
launcher kafka-configs.sh kafka.admin.ConfigCommand WARN "$tool_opts"
launcher kafka-broker-api-versions.sh org.apache.kafka.tools.BrokerApiVersionsCommand WARN "$tool_opts"
launcher kafka-get-offsets.sh org.apache.kafka.tools.GetOffsetShell WARN "$tool_opts"
chmod 0755 "$rootfs"/opt/kafka/bin/*.sh

tar -C "$rootfs" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
