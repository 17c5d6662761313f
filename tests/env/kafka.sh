#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker + controller) for tests and the demo,
# built from Maven Central jars: no tarball, no Docker.
#
#   tests/env/kafka.sh fetch   resolve the jars into the cache
#   tests/env/kafka.sh start   format a fresh node in a temp dir, start it on free
#                              ports, wait until it answers; writes $PIXELPIPE_RUN/kafka.env
#   tests/env/kafka.sh stop    stop it and delete its data
#   tests/env/kafka.sh status  print the bootstrap address if it runs
#   tests/env/kafka.sh lag G   Kafka's own consumer-group tool: group G's offsets and lag
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")
LIB="$PIXELPIPE_CACHE/kafka-$KAFKA_VERSION/lib"
DIR="$PIXELPIPE_RUN/kafka"
JAVA="${JAVA:-java}"

fetch() {
  if [ -f "$LIB/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "maven (mvn) is needed to fetch Kafka's jars"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
  local tmp="$LIB.tmp.$$"
  rm -rf "$tmp"
  mvn -q -B -f "$here/kafka-pom.xml" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
  touch "$LIB/.complete"
}

write_config() {
  local bport=$1 cport=$2
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.quorum.voters=1@127.0.0.1:$cport
log.dirs=$DIR/data
num.partitions=6
auto.create.topics.enable=false
# One node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumers right away; the default 3 s delay only slows them.
group.initial.rebalance.delay.ms=0
log.segment.bytes=268435456
log.retention.hours=24
PROPS
  cat >"$DIR/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $DIR/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.org.name = org.apache.kafka
logger.org.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
PROPS
}

start() {
  fetch
  if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
    log "Kafka already runs: $(status)"
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/data"
  local bport cport cluster_id
  bport=$(free_port)
  cport=$(free_port)
  while [ "$cport" = "$bport" ]; do cport=$(free_port); done
  write_config "$bport" "$cport"
  local cp="$LIB/*"
  cluster_id=$("$JAVA" -cp "$cp" kafka.tools.StorageTool random-uuid)
  "$JAVA" -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$cp" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 ||
    { cat "$DIR/format.log" >&2; die "formatting the KRaft storage failed"; }
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$bport"
  # Heap is small on purpose: the machine also runs the workers under test.
  nohup setsid "$JAVA" -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$DIR/server.properties" >"$DIR/stdout.log" 2>&1 </dev/null &
  echo $! >"$DIR/pid"
  if ! wait_for 90 "Kafka" started "$bport"; then
    tail -n 40 "$DIR/stdout.log" "$DIR/broker.log" >&2 || true
    die "Kafka did not start within 90 s (logs in $DIR)"
  fi
  printf 'export KAFKA_BOOTSTRAP=127.0.0.1:%s\n' "$bport" >"$PIXELPIPE_RUN/kafka.env"
  log "Kafka is up: KAFKA_BOOTSTRAP=127.0.0.1:$bport (source $PIXELPIPE_RUN/kafka.env)"
}

started() {
  kill -0 "$(cat "$DIR/pid")" || return 1
  port_open "$1" && grep -q "Kafka Server started" "$DIR/broker.log"
}

stop() {
  if [ -f "$DIR/pid" ]; then log "stopping Kafka"; fi
  stop_pid "$DIR/pid"
  rm -rf "$DIR" "$PIXELPIPE_RUN/kafka.env"
}

status() {
  [ -f "$PIXELPIPE_RUN/kafka.env" ] && [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null ||
    { echo "Kafka is not running" >&2; return 1; }
  sed -n 's/^export //p' "$PIXELPIPE_RUN/kafka.env"
}

# Kafka's ConsumerGroupCommand (kafka-consumer-groups.sh --describe), for tests
# that compare their lag numbers with Kafka's.
lag() {
  [ -n "${1:-}" ] || die "usage: $0 lag GROUP"
  local bootstrap
  bootstrap=${KAFKA_BOOTSTRAP:-$(status | sed -n 's/^KAFKA_BOOTSTRAP=//p')}
  "$JAVA" -cp "$LIB/*" -Dlog4j2.level=error org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$bootstrap" --describe --group "$1" 2>/dev/null
}

case "${1:-}" in
  fetch) fetch ;;
  lag) lag "${2:-}" ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|stop|status|lag GROUP" >&2; exit 2 ;;
esac
