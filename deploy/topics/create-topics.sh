#!/bin/sh
# Creates the clinic's Kafka topics; a topic that exists already is left as it is.
# Runs in the apache/kafka image: docker-compose.yml (kafka-init) mounts this file and
# deploy/k8s/topics-job.yaml carries a copy (tests/deploy keeps the two identical).
#   BOOTSTRAP_SERVERS  host:port[,host:port...]
#   TOPICS             one topic per line: <name> <partitions> <replication factor> <key=value,...>
#                      (the definitions of deploy/topics/topics.yaml)
#   KAFKA_BIN          directory of kafka-topics.sh (default /opt/kafka/bin)
set -eu
: "${BOOTSTRAP_SERVERS:?BOOTSTRAP_SERVERS is not set}"
: "${TOPICS:?TOPICS is not set}"
kafka_topics="${KAFKA_BIN:-/opt/kafka/bin}/kafka-topics.sh"

printf '%s\n' "$TOPICS" | while read -r name partitions replication configs; do
  [ -n "$name" ] || continue
  set --
  for setting in $(printf '%s' "$configs" | tr ',' ' '); do
    set -- "$@" --config "$setting"
  done
  "$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVERS" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$replication" "$@"
done
"$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVERS" --list
