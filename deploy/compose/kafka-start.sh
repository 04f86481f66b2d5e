#!/bin/bash
# The Compose broker's start: the apache/kafka image's own start (/etc/kafka/docker/run, which
# turns the KAFKA_* environment into server.properties), with SASL/SCRAM added first.
#
# - The broker talks to itself as waymark-admin (the super user): its password is read here
#   from the Compose secret, never written in docker-compose.yml.
# - A SCRAM credential lives in the cluster metadata, so the first one must be there before any
#   client can sign in: the storage is formatted once with waymark-admin's credential
#   (`kafka-storage.sh format --add-scram`). The image's own format step then finds it
#   formatted and goes on, as it does on every restart with the kafka-data volume.
# The other principals get their credentials and ACLs from the `kafka-users` one-shot.
set -euo pipefail
admin_password="$(cat /run/secrets/kafka_waymark_admin)"
export KAFKA_LISTENER_NAME_SASL__PLAINTEXT_SCRAM___SHA___512_SASL_JAAS_CONFIG="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"waymark-admin\" password=\"${admin_password}\";"

format=/tmp/format.properties
cat > "$format" <<PROPS
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=${KAFKA_CONTROLLER_LISTENER_NAMES}
listeners=${KAFKA_LISTENERS}
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP}
inter.broker.listener.name=${KAFKA_INTER_BROKER_LISTENER_NAME}
sasl.enabled.mechanisms=${KAFKA_SASL_ENABLED_MECHANISMS}
sasl.mechanism.inter.broker.protocol=${KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL}
log.dirs=${KAFKA_LOG_DIRS}
PROPS
/opt/kafka/bin/kafka-storage.sh format --cluster-id "${CLUSTER_ID}" --config "$format" \
  --ignore-formatted \
  --add-scram "SCRAM-SHA-512=[name=waymark-admin,iterations=8192,password=${admin_password}]"
rm -f "$format"
exec /etc/kafka/docker/run
