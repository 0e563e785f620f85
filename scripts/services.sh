#!/usr/bin/env bash
# Start the local services the tests use (PostgreSQL, Redis, RabbitMQ) if they are down. Idempotent.
set -uo pipefail

up() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null; then
  (service rabbitmq-server start || rabbitmq-server -detached) >/dev/null 2>&1 || true
fi
for _ in $(seq 1 60); do
  { up 5432 || ! command -v pg_ctlcluster >/dev/null; } && { up 6379 || ! command -v redis-server >/dev/null; } &&
    { up 5672 || ! command -v rabbitmq-server >/dev/null; } && break
  sleep 1
done
exit 0
