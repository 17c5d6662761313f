#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker + controller) for tests and the demo,
# built from Maven Central jars: no tarball, no Docker.
#
#   tests/env/kafka.sh fetch   resolve the jars into the cache
#   tests/env/kafka.sh start   format a fresh node in a temp dir, start it on free
#                              ports, wait until it answers; writes $PIXELPIPE_RUN/kafka.env
#                              (a halted node is discarded: start is always fresh)
#   tests/env/kafka.sh stop    stop it and delete its data
#   tests/env/kafka.sh status  print the kafka.env variables if it runs
#                              (exit 1 if it does not run or is halted)
#   tests/env/kafka.sh halt    fault injection: stop the broker process (TERM, then
#                              KILL) but keep its data, config, ports and kafka.env
#   tests/env/kafka.sh resume  start the halted node again (same data, config and
#                              ports) and wait until it answers
#   tests/env/kafka.sh freeze  fault injection: SIGSTOP the broker process. Its sockets
#                              stay open and nothing is answered: clients see a
#                              broker that hangs, not one that is gone. Refuses
#                              when KAFKA_BOOTSTRAP is set and names another node
#                              (so a test never freezes a broker someone else uses)
#   tests/env/kafka.sh thaw    SIGCONT it again (a no-op if it is not frozen)
#   tests/env/kafka.sh lag G   Kafka's own consumer-group tool: group G's offsets and lag
#   tests/env/kafka.sh quota C B   throttle what clients with client.id C produce to
#                              B bytes/s (a broker quota); B=none removes it
#   tests/env/kafka.sh scram-user U P   create (or change the password of) the
#                              SCRAM-SHA-512 user U with password P, as a
#                              credential rotation does
#
# The node has two client listeners on 127.0.0.1:
#   PLAINTEXT  no TLS, no authentication; what the tests use by default
#              (KAFKA_BOOTSTRAP). Inter-broker traffic stays on it.
#   SASL_SSL   TLS with a self-signed CA made at start (server certificate for
#              IP:127.0.0.1 and DNS:localhost, so hostname verification passes)
#              and SCRAM-SHA-512 authentication for one user whose random
#              password is made at start. No authorizer: any authenticated user
#              may do anything; a wrong password fails authentication.
# PIXELPIPE_KAFKA_IN_MEMORY=1 at start keeps the node's log in memory (tmpfs,
# /dev/shm) and deletes a deleted topic's files after 1 s instead of 60: the
# benchmarks use it, so that no disk writeback runs on the cores they measure.
# kafka.env exports:
#   KAFKA_BOOTSTRAP       127.0.0.1:PORT of the PLAINTEXT listener
#   KAFKA_SASL_BOOTSTRAP  127.0.0.1:PORT of the SASL_SSL listener
#   KAFKA_SASL_USERNAME   the SCRAM-SHA-512 user (pixelpipe)
#   KAFKA_SASL_PASSWORD   its password (hex, fresh at every start)
#   KAFKA_CA_FILE         absolute path of the CA certificate (PEM), for
#                         librdkafka's ssl.ca.location
#   KAFKA_POD_BOOTSTRAP   NODE_IP:PORT of a third listener, PLAINTEXT, on the real
#                         node's bridge (tests/env/node.sh), when the bridge was
#                         up at start: what pods on that node connect to
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

SASL_USER=pixelpipe

write_config() {
  local bport=$1 cport=$2 sport=$3 pport=${4:-}
  local pods="" pods_map="" memory=""
  # A log in memory: a deleted topic's files go soon, not after a minute.
  if [ -L "$DIR/data" ]; then memory="file.delete.delay.ms=1000"; fi
  if [ -n "$pport" ]; then
    pods=",PODS://$PIXELPIPE_NODE_IP:$pport" pods_map=",PODS:PLAINTEXT"
  fi
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport$pods
advertised.listeners=PLAINTEXT://127.0.0.1:$bport,SASL_SSL://127.0.0.1:$sport$pods
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL$pods_map
controller.quorum.voters=1@127.0.0.1:$cport
# SASL_SSL: TLS from PEM files (no keystore passwords, no keytool) and
# SCRAM-SHA-512; the credential is added when the storage is formatted.
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/tls/server.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$DIR/tls/ca.pem
listener.name.sasl_ssl.ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.enabled.mechanisms=SCRAM-SHA-512
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
# Hostile-input tests send 10 MB payloads, and their dead-letter copies must
# fit too (the default limit is 1 MB).
message.max.bytes=16777216
log.retention.hours=24
$memory
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

# A fresh self-signed CA and a server certificate for 127.0.0.1 and localhost,
# signed by it, in $DIR/tls: ca.pem (what clients trust) and server.pem (the
# broker's PKCS#8 key followed by its certificate, Kafka's PEM keystore).
make_tls() {
  local t="$DIR/tls"
  mkdir -p "$t"
  (
    cd "$t"
    umask 077
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout ca.key -out ca.pem -days 30 -subj "/CN=pixelpipe test CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout server.key -out server.csr -subj "/CN=localhost"
    cat >server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -days 30 -sha256 -extfile server.ext -out server.crt
    cat server.key server.crt >server.pem
    chmod 644 ca.pem
  ) >"$DIR/tls.log" 2>&1 || { cat "$DIR/tls.log" >&2; die "making the TLS certificates failed"; }
}

start() {
  fetch
  if running; then
    log "Kafka already runs: $(status)"
    return 0
  fi
  remove_node
  mkdir -p "$DIR"
  if [ "${PIXELPIPE_KAFKA_IN_MEMORY:-0}" = 1 ]; then
    ln -s "$(mktemp -d /dev/shm/pixelpipe-kafka.XXXXXX)" "$DIR/data"
  else
    mkdir "$DIR/data"
  fi
  local bport cport sport pport cluster_id password
  bport=$(free_port)
  cport=$(free_port)
  while [ "$cport" = "$bport" ]; do cport=$(free_port); done
  sport=$(free_port)
  while [ "$sport" = "$bport" ] || [ "$sport" = "$cport" ]; do sport=$(free_port); done
  # Pods of the real node (tests/env/node.sh) reach the host only at the
  # bridge's address: a listener there when the bridge is up.
  pport=""
  if pod_network_up; then
    pport=$(free_port)
    while [ "$pport" = "$bport" ] || [ "$pport" = "$cport" ] || [ "$pport" = "$sport" ]; do pport=$(free_port); done
  fi
  make_tls
  password=$(openssl rand -hex 16)
  write_config "$bport" "$cport" "$sport" "$pport"
  local cp="$LIB/*"
  cluster_id=$("$JAVA" -cp "$cp" kafka.tools.StorageTool random-uuid)
  "$JAVA" -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$cp" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$password]" >"$DIR/format.log" 2>&1 ||
    { cat "$DIR/format.log" >&2; die "formatting the KRaft storage failed"; }
  launch "$bport" "$sport"
  {
    printf 'export KAFKA_BOOTSTRAP=127.0.0.1:%s\n' "$bport"
    printf 'export KAFKA_SASL_BOOTSTRAP=127.0.0.1:%s\n' "$sport"
    printf 'export KAFKA_SASL_USERNAME=%s\n' "$SASL_USER"
    printf 'export KAFKA_SASL_PASSWORD=%s\n' "$password"
    printf 'export KAFKA_CA_FILE=%s\n' "$(cd "$DIR/tls" && pwd)/ca.pem"
    if [ -n "$pport" ]; then printf 'export KAFKA_POD_BOOTSTRAP=%s:%s\n' "$PIXELPIPE_NODE_IP" "$pport"; fi
  } >"$PIXELPIPE_RUN/kafka.env"
  log "Kafka is up: KAFKA_BOOTSTRAP=127.0.0.1:$bport, KAFKA_SASL_BOOTSTRAP=127.0.0.1:$sport (source $PIXELPIPE_RUN/kafka.env)"
}

# launch BPORT SPORT: runs the node configured in $DIR (formatted already) and
# waits until both client listeners answer. Used by start and resume.
launch() {
  local bport=$1 sport=$2 p
  for p in "$bport" "$sport"; do
    if port_open "$p"; then die "port $p of 127.0.0.1 is taken: cannot start Kafka"; fi
  done
  # started() looks for the start message of this run only: broker.log keeps
  # the lines of the runs before a halt.
  log_from=0
  if [ -f "$DIR/broker.log" ]; then log_from=$(wc -l <"$DIR/broker.log"); fi
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$bport (SASL_SSL on 127.0.0.1:$sport)"
  # Heap is small on purpose: the machine also runs the workers under test.
  nohup setsid "$JAVA" -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -cp "$LIB/*" kafka.Kafka "$DIR/server.properties" >>"$DIR/stdout.log" 2>&1 </dev/null &
  echo $! >"$DIR/pid"
  if ! wait_for 90 "Kafka" started "$bport" "$sport"; then
    tail -n 40 "$DIR/stdout.log" "$DIR/broker.log" >&2 || true
    die "Kafka did not start within 90 s (logs in $DIR)"
  fi
}

started() {
  kill -0 "$(cat "$DIR/pid")" || return 1
  port_open "$1" && port_open "$2" &&
    awk -v from="$log_from" 'NR > from && /Kafka Server started/ { found = 1 } END { exit !found }' "$DIR/broker.log"
}

stop() {
  if [ -f "$DIR/pid" ]; then log "stopping Kafka"; fi
  # A frozen node takes no TERM until it runs again.
  if [ -f "$DIR/pid" ]; then kill -CONT "$(cat "$DIR/pid")" 2>/dev/null || true; fi
  stop_pid "$DIR/pid"
  remove_node
}

# The node's files, its in-memory log included.
remove_node() {
  if [ -L "$DIR/data" ]; then rm -rf "$(readlink "$DIR/data")"; fi
  rm -rf "$DIR" "$PIXELPIPE_RUN/kafka.env"
}

running() {
  local state
  [ -f "$DIR/pid" ] || return 1
  state=$(ps -o stat= -p "$(cat "$DIR/pid")" 2>/dev/null) || return 1
  # A broker that died (kill -9, a crash) stays a zombie until it is reaped.
  case $state in Z*) return 1 ;; esac
}

# A node that was started: its config and kafka.env exist (halt keeps them).
exists() { [ -f "$DIR/server.properties" ] && [ -f "$PIXELPIPE_RUN/kafka.env" ]; }

# A node that was started and then halted: config, data and kafka.env, no process.
halted() { exists && ! running; }

halt() {
  exists || die "no Kafka to halt (run $0 start first)"
  if halted; then
    log "Kafka is halted already"
  else
    log "halting Kafka (data, config, ports and kafka.env are kept)"
  fi
  stop_pid "$DIR/pid"
}

resume() {
  exists || die "no halted Kafka to resume (run $0 start first)"
  if ! halted; then
    log "Kafka already runs: $(status)"
    return 0
  fi
  fetch
  local bport sport
  bport=$(sed -n 's/^export KAFKA_BOOTSTRAP=127\.0\.0\.1://p' "$PIXELPIPE_RUN/kafka.env")
  sport=$(sed -n 's/^export KAFKA_SASL_BOOTSTRAP=127\.0\.0\.1://p' "$PIXELPIPE_RUN/kafka.env")
  if [ -z "$bport" ] || [ -z "$sport" ]; then die "$PIXELPIPE_RUN/kafka.env lacks the listener ports"; fi
  launch "$bport" "$sport"
  log "Kafka is up again: KAFKA_BOOTSTRAP=127.0.0.1:$bport, KAFKA_SASL_BOOTSTRAP=127.0.0.1:$sport"
}

# this_node: refuses to act on this node when KAFKA_BOOTSTRAP names another.
this_node() {
  local mine
  mine=$(sed -n 's/^export KAFKA_BOOTSTRAP=//p' "$PIXELPIPE_RUN/kafka.env")
  if [ -n "${KAFKA_BOOTSTRAP:-}" ] && [ "$KAFKA_BOOTSTRAP" != "$mine" ]; then
    die "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP is not this node ($mine in $PIXELPIPE_RUN): refusing"
  fi
}

freeze() {
  exists && running || die "no running Kafka to freeze (run $0 start first)"
  this_node
  log "freezing Kafka (SIGSTOP; $0 thaw resumes it)"
  kill -STOP "$(cat "$DIR/pid")"
}

thaw() {
  exists && running || die "no Kafka to thaw"
  this_node
  log "thawing Kafka (SIGCONT)"
  kill -CONT "$(cat "$DIR/pid")"
}

status() {
  if halted; then
    echo "Kafka is halted ($0 resume starts it again)" >&2
    return 1
  fi
  if ! exists || ! running; then
    echo "Kafka is not running" >&2
    return 1
  fi
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

quota() {
  [ -n "${1:-}" ] && [ -n "${2:-}" ] || die "usage: $0 quota CLIENT_ID BYTES_PER_SECOND|none"
  local bootstrap change
  bootstrap=${KAFKA_BOOTSTRAP:-$(status | sed -n 's/^KAFKA_BOOTSTRAP=//p')}
  if [ "$2" = none ]; then change=(--delete-config producer_byte_rate); else change=(--add-config "producer_byte_rate=$2"); fi
  "$JAVA" -cp "$LIB/*" -Dlog4j2.level=error kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" \
    --alter "${change[@]}" --entity-type clients --entity-name "$1" >/dev/null
}

scram_user() {
  [ -n "${1:-}" ] && [ -n "${2:-}" ] || die "usage: $0 scram-user USER PASSWORD"
  local bootstrap
  bootstrap=${KAFKA_BOOTSTRAP:-$(status | sed -n 's/^KAFKA_BOOTSTRAP=//p')}
  "$JAVA" -cp "$LIB/*" -Dlog4j2.level=error kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" \
    --alter --add-config "SCRAM-SHA-512=[password=$2]" --entity-type users --entity-name "$1" >/dev/null
}

case "${1:-}" in
  fetch) fetch ;;
  lag) lag "${2:-}" ;;
  quota) quota "${2:-}" "${3:-}" ;;
  scram-user) scram_user "${2:-}" "${3:-}" ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  halt) halt ;;
  resume) resume ;;
  freeze) freeze ;;
  thaw) thaw ;;
  *) echo "usage: $0 fetch|start|stop|status|halt|resume|freeze|thaw|lag GROUP|quota CLIENT BYTES|scram-user USER PASSWORD" >&2; exit 2 ;;
esac
