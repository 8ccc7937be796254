#!/bin/bash
# Runs a Kafka main class on the Maven jars; honours KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS like
# the upstream script.
set -euo pipefail
main_class=$1
shift
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml \
    -cp '/opt/kafka/libs/*' "$main_class" "$@"
