#!/usr/bin/env bash
# How long HAProxy takes to check a server that leaves maintenance, and whether any
# setting or runtime command hurries that first check. It is the wait a repool pays
# (mwdeploy waits for a passed check before it makes a server ready: see
# docs/operator-guide.md) and the main part of the out-of-service figures in
# BENCHMARKS.md.
#
# Usage: benches/haproxy-check-phase.sh [SAMPLES] [SECONDS_IN_MAINTENANCE]
#
# For each variant it puts one server in maintenance for SECONDS (default 0.2, about a
# deploy's window), takes it out through DRAIN, runs the variant's extra commands, and
# times how long until `show stat` shows the check passed (`DRAIN`, no `1/2`).
# Needs haproxy, php (its built-in web server is the checked server) and socat
# (scripts/install-deps.sh).
set -euo pipefail

samples=${1:-8}
maint=${2:-0.2}
for tool in haproxy php socat; do
    command -v "$tool" >/dev/null || {
        echo "haproxy-check-phase: $tool not found: run scripts/install-deps.sh" >&2
        exit 2
    }
done

dir=$(mktemp -d)
web_pid=
ha_pid=
cleanup() {
    [ -n "$ha_pid" ] && kill "$ha_pid" 2>/dev/null || true
    [ -n "$web_pid" ] && kill "$web_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 10000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
            echo "$p"
            return
        }
    done
}

mkdir "$dir/www"
echo '<?php echo "ok";' >"$dir/www/index.php"
web_port=$(free_port)
php -S "127.0.0.1:$web_port" -t "$dir/www" >/dev/null 2>&1 &
web_pid=$!

sock="$dir/admin.sock"
q() { printf '%s\n' "$1" | socat stdio "unix-connect:$sock"; }
status() { q "show stat" | awk -F, '$1 == "b" && $2 == "s1" { print $18 }'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

run() {
    local label=$1 server_opts=$2 extra=$3
    [ -n "$ha_pid" ] && kill "$ha_pid" 2>/dev/null && wait "$ha_pid" 2>/dev/null || true
    rm -f "$sock"
    cat >"$dir/haproxy.cfg" <<EOF
global
    stats socket $sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s
backend b
    option httpchk GET /
    default-server $server_opts
    server s1 127.0.0.1:$web_port check
EOF
    haproxy -f "$dir/haproxy.cfg" -db >/dev/null 2>&1 &
    ha_pid=$!
    local i=0
    until [ -S "$sock" ] && [ "$(status)" = UP ]; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || { echo "haproxy did not come up" >&2; exit 1; }
        sleep 0.02
    done
    local waits=()
    for ((k = 0; k < samples; k++)); do
        q "set server b/s1 state maint" >/dev/null
        sleep "$maint"
        local t0
        t0=$(now_ms)
        q "set server b/s1 state drain" >/dev/null
        if [ -n "$extra" ]; then
            IFS=';' read -ra cmds <<<"$extra"
            for c in "${cmds[@]}"; do q "$c" >/dev/null; done
        fi
        until [ "$(status)" = DRAIN ]; do
            [ $(($(now_ms) - t0)) -lt 3000 ] || break
        done
        waits+=($(($(now_ms) - t0)))
        q "set server b/s1 state ready" >/dev/null
        # Back in the pool for a while, at a different point of the check period each time.
        sleep "0.$((3 + k % 5))"
    done
    local sorted
    sorted=$(printf '%s\n' "${waits[@]}" | sort -n | tr '\n' ' ')
    local median
    median=$(printf '%s\n' "${waits[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    printf '| %s | %s | %s ms |\n' "$label" "$sorted" "$median"
}

echo "HAProxy $(haproxy -v | head -1 | awk '{ print $3 }'), $samples samples, ${maint}s in maintenance each"
echo
echo "| variant | ms from leaving maintenance to a passed check | median |"
echo "| --- | --- | ---: |"
base="inter 500ms fastinter 250ms rise 2 fall 2"
run "inter 500ms (downinter 500ms)" "$base downinter 500ms" ""
run "inter 500ms, downinter 100ms" "$base downinter 100ms" ""
run "inter 500ms, then disable + enable health" "$base" "disable health b/s1;enable health b/s1"
run "inter 500ms, then set check-port" "$base" "set server b/s1 check-port $web_port"
run "inter 500ms, then set addr" "$base" "set server b/s1 addr 127.0.0.1 port $web_port"
run "inter 200ms" "inter 200ms fastinter 100ms rise 2 fall 2" ""
