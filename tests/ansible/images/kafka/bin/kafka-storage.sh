#!/bin/bash
# Same command line as Apache Kafka's bin/kafka-storage.sh.
KAFKA_HEAP_OPTS="-Xmx256m" exec /opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool "$@"
