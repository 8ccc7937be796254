#!/bin/bash
# Same command line as Apache Kafka's bin/kafka-server-start.sh, which logs with log4j2.yaml.
KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml}" \
    KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g}" exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
