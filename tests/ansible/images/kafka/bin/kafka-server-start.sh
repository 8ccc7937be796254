#!/bin/bash
# Same command line as Apache Kafka's bin/kafka-server-start.sh.
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g}" exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
