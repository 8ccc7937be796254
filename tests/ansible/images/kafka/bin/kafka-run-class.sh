#!/bin/bash
# Runs a Kafka main class on the Maven jars; honours KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS and
# KAFKA_LOG4J_OPTS like the upstream script. As upstream, a tool logs warnings to stderr only
# (tools-log4j2.yaml), so its stdout is its answer: the kafka role's scripts parse it.
set -euo pipefail
main_class=$1
shift
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml} \
    -cp '/opt/kafka/libs/*' "$main_class" "$@"
