#!/bin/bash
# kafka-init (docker-compose.yml): creates the SCRAM users the clients log in with: admin (a super user: migrate and
# kafka-acls run as it), relay and worker (their ACLs come from `tenderhub kafka-acls`). It logs in as the brokers'
# own PLAIN user. Passwords go from the secret files into a private config file, never onto a command line.
set -euo pipefail
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
secret() { tr -d '\n' < "/run/secrets/$1"; }

{
  echo "security.protocol=SASL_SSL"
  echo "sasl.mechanism=PLAIN"
  echo "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"$(secret kafka_broker_password)\";"
  echo "ssl.truststore.type=PEM"
  echo "ssl.truststore.location=/run/secrets/ca.pem"
} > "$work/admin.properties"

for user in admin relay worker; do
  echo "SCRAM-SHA-512=[iterations=8192,password=$(secret "kafka_${user}_password")]" > "$work/$user.properties"
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$work/admin.properties" \
    --alter --entity-type users --entity-name "$user" --add-config-file "$work/$user.properties"
done
echo "kafka-init: SCRAM users admin, relay, worker ready"
