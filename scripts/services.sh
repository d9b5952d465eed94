#!/usr/bin/env bash
# Start Postgres and Redis for the integration tests if they are installed but down. Best effort:
# it never fails the caller; tests that need a service skip with the reason when it is unreachable.
#   PGHOST/PGPORT (127.0.0.1:5432), REDIS_HOST/REDIS_PORT (127.0.0.1:6379)
set -u
PGHOST="${PGHOST:-127.0.0.1}"; PGPORT="${PGPORT:-5432}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"; REDIS_PORT="${REDIS_PORT:-6379}"

pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PGHOST" -p "$PGPORT"; }
redis_up() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

if pg_up; then
  echo "postgres: up at $PGHOST:$PGPORT"
else
  echo "postgres: down; trying to start it ..."
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do pg_ctlcluster "${c%/*}" "${c#*/}" start 2>/dev/null; done
  fi
  pg_up || (command -v service >/dev/null 2>&1 && service postgresql start >/dev/null 2>&1)
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
  pg_up && echo "postgres: started" || echo "postgres: unavailable (integration tests will skip)"
fi

if redis_up; then
  echo "redis: up at $REDIS_HOST:$REDIS_PORT"
else
  echo "redis: down; trying to start it ..."
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind "$REDIS_HOST" --daemonize yes --save "" --appendonly no >/dev/null 2>&1 \
      || (command -v service >/dev/null 2>&1 && service redis-server start >/dev/null 2>&1)
  fi
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up && echo "redis: started" || echo "redis: unavailable (integration tests will skip)"
fi
exit 0
