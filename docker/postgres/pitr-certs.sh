#!/bin/sh
# One-shot (compose.pitr.yaml's pitr-certs service): a private CA, the database host's
# server certificate (DNS name "postgres", the service's name) and the worker's client
# certificate (CN "worker", the name pgBackRest's tls-server-auth admits), in /pitr-tls.
# Does nothing when they exist; delete the volume's files to make new ones.
set -eu
cd /pitr-tls
if [ -s ca.crt ] && [ -s server.crt ] && [ -s worker.crt ]; then
  echo "pitr-certs: certificates exist"; exit 0
fi
days=${PITR_TLS_DAYS:-3650}
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=schoolhouse-pitr-ca" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:3072 -nodes -subj "/CN=postgres" -keyout server.key -out server.csr
printf 'subjectAltName=DNS:postgres\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -extfile server.ext -out server.crt
openssl req -newkey rsa:3072 -nodes -subj "/CN=worker" -keyout worker.key -out worker.csr
openssl x509 -req -in worker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -out worker.crt
rm -f ./*.csr ./*.ext ca.srl
# The server's key to postgres (uid 999 in the postgres image), the client's to the app's
# user (uid 10001, docker/Dockerfile); the CA's key stays root's.
chown 999:999 server.key server.crt && chmod 0600 server.key
chown 10001:10001 worker.key worker.crt && chmod 0600 worker.key
chmod 0644 ca.crt && chmod 0600 ca.key
echo "pitr-certs: made ca.crt, server.crt (postgres) and worker.crt"
