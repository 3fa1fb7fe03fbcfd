#!/usr/bin/env bash
# Starts a throw-away Redis on 127.0.0.1:6379 (the Celery broker of `make workers` and the
# tests) unless one already answers. No persistence: the broker holds only queued step tasks.
# Exit status 0 when Redis answers, 1 when it is down and redis-server is not installed.
set -euo pipefail
PORT="${REDIS_PORT:-6379}"

answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) \
            2>/dev/null
    fi
}

if answers; then
    exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "Redis is not running on 127.0.0.1:$PORT and redis-server is not installed" \
        "(Debian/Ubuntu: apt-get install redis-server)" >&2
    exit 1
fi
redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --logfile "${TMPDIR:-/tmp}/llm-assets-redis-$PORT.log" >/dev/null
for _ in $(seq 1 50); do
    if answers; then
        echo "started redis-server on 127.0.0.1:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "redis-server did not answer on 127.0.0.1:$PORT; see ${TMPDIR:-/tmp}/llm-assets-redis-$PORT.log" >&2
exit 1
