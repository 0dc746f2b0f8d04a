#!/usr/bin/env bash
# The old Python mwdeploy's per-server procedure (`--rsync --rollout`), as a script, for the
# end-to-end benchmark (benches/src/bin/e2e.rs). Serial, one server after the other, exactly
# the steps and ssh options the old tool runs (shared/seeds/README.md):
#
#   1. depool: on each proxy in turn, over ssh,
#        printf 'disable server <backend>/<server>\n' | socat stdio <socket>
#      (the answer is not read: the old tool never looked at it);
#   2. rsync -az --delete --exclude cache/ -e "ssh <opts>" <staging>/ <host>:<live>/
#      straight into the live tree (no release directories; .git ships too);
#   3. canary over ssh on the server:
#        curl -sS --max-time 15 --location -H 'Host: <vhost>' <url>
#      HTTP 200 and `wikioasis` in the body (case-insensitive), 3 tries, 3 s apart;
#   4. repool: `enable server` on each proxy in turn, over ssh, whatever the canary said
#      (the old tool repooled a server that failed its canary too).
#
# ssh options, as the old tool passes them:
#   -i <ssh_identity> -o StrictHostKeyChecking=no -o BatchMode=yes
#   -o ControlMaster=auto -o ControlPath=<dir>/%r@%n:%p -o ControlPersist=60s
#
# Differences from production, all forced by the loopback fleet, none changing the work done:
# - The old tool ran `--rsync-path="sudo rsync"` as a deploy user; the fleet runs as root, so
#   there is no sudo.
# - Every "host" is 127.0.0.1 on its own sshd port. Hosts are still addressed by name
#   (`root@mw1` with `-o HostName=127.0.0.1 -p PORT`) and the ControlPath is keyed by that
#   name (%n), so each host gets its own multiplexed connection as it had in production.
# - The proxies' admin sockets are local files; the old tool ssh'd to each proxy host. Here
#   the proxy step goes over ssh to 127.0.0.1 through one of the fleet's sshd ports (any
#   fleet sshd reaches the local socket path), named after the proxy (`root@lb1`), so the
#   ssh connection it costs is paid as in production.
# - curl's status code is read with `-w '\n%{http_code}'` (the old tool read it from its
#   HTTP library's answer); nothing else of the request changes.
# - `--known-hosts FILE` (optional) keeps the keys StrictHostKeyChecking=no records out of
#   ~/.ssh/known_hosts; without it ssh uses the default file, as the old tool did.
#
# Usage:
#   old-procedure.sh --staging DIR --vhost HOST --identity KEY --control-dir DIR \
#       [--user root] [--backend mediawiki] [--known-hosts FILE] \
#       --proxy NAME,SSH_HOST,SSH_PORT,SOCKET ...  (every proxy, in order) \
#       --server NAME,SSH_HOST,SSH_PORT,LIVE_PATH,CANARY_URL ...  (deployed in this order)
#
# Prints one line per step with a timestamp (seconds since the epoch, ms) on stdout:
#   <ts> <server> depool|rsync|canary-ok|canary-failed|repool ...
# Exits 0 when every server passed its canary, 1 when one failed (all are still deployed
# and repooled, as the old tool did with --force), 2 on a usage error, and with the failing
# command's status when a depool, rsync or repool command fails (set -e).
set -euo pipefail

user=root
backend=mediawiki
staging= vhost= identity= control_dir= known_hosts=
proxies=() servers=()

usage() {
    sed -n '/^# Usage:/,/^# Prints/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --staging) staging=$2; shift 2 ;;
    --vhost) vhost=$2; shift 2 ;;
    --identity) identity=$2; shift 2 ;;
    --control-dir) control_dir=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --known-hosts) known_hosts=$2; shift 2 ;;
    --proxy) proxies+=("$2"); shift 2 ;;
    --server) servers+=("$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "old-procedure.sh: unknown argument: $1" >&2; usage ;;
    esac
done
if [ -z "$staging" ] || [ -z "$vhost" ] || [ -z "$identity" ] || [ -z "$control_dir" ] \
    || [ ${#servers[@]} -eq 0 ]; then
    usage
fi
# The steps below reach remote shells as strings, as the old tool's did: every value that
# goes into one is checked first, so no name or path can carry shell syntax.
safe() { # safe WHAT VALUE PATTERN
    [[ $2 =~ $3 ]] || { echo "old-procedure.sh: bad $1: ${2@Q}" >&2; exit 2; }
}
name_re='^[A-Za-z0-9][A-Za-z0-9._-]*$'
path_re='^/[A-Za-z0-9._/-]*$'
safe backend "$backend" "$name_re"
safe user "$user" "$name_re"
safe vhost "$vhost" "$name_re"
for p in ${proxies[@]+"${proxies[@]}"}; do
    IFS=, read -r name host port socket <<<"$p"
    safe "proxy name" "$name" "$name_re"; safe "proxy host" "$host" "$name_re"
    safe "proxy port" "$port" '^[0-9]+$'; safe "proxy socket" "$socket" "$path_re"
done
for s in "${servers[@]}"; do
    IFS=, read -r name host port live url <<<"$s"
    safe "server name" "$name" "$name_re"; safe "server host" "$host" "$name_re"
    safe "server port" "$port" '^[0-9]+$'; safe "live path" "$live" "$path_re"
    safe "canary url" "$url" '^https?://[A-Za-z0-9._:/-]+$'
done
mkdir -p "$control_dir"

# The old tool's ssh options.
ssh_opts=(-i "$identity" -o StrictHostKeyChecking=no -o BatchMode=yes
    -o ControlMaster=auto -o "ControlPath=$control_dir/%r@%n:%p" -o ControlPersist=60s)
if [ -n "$known_hosts" ]; then
    ssh_opts+=(-o "UserKnownHostsFile=$known_hosts")
fi

now() { date +%s.%3N; }
log() { echo "$(now) $*"; }

# ssh_to NAME HOST PORT COMMAND: runs COMMAND on NAME (reached at HOST:PORT).
ssh_to() {
    local name=$1 host=$2 port=$3
    shift 3
    ssh "${ssh_opts[@]}" -o "HostName=$host" -p "$port" "$user@$name" "$@"
}

# pool ACTION SERVER: `disable` or `enable` SERVER on every proxy in turn.
pool() {
    local action=$1 server=$2 p name host port socket
    for p in ${proxies[@]+"${proxies[@]}"}; do
        IFS=, read -r name host port socket <<<"$p"
        ssh_to "$name" "$host" "$port" \
            "printf '$action server $backend/$server\n' | socat stdio $socket" >/dev/null
    done
}

failed=0
for s in "${servers[@]}"; do
    IFS=, read -r name host port live url <<<"$s"

    pool disable "$name"
    log "$name depool"

    rsync -az --delete --exclude cache/ \
        -e "ssh ${ssh_opts[*]} -o HostName=$host -p $port" \
        "$staging/" "$user@$name:$live/"
    log "$name rsync"

    ok=0
    for try in 1 2 3; do
        out=$(ssh_to "$name" "$host" "$port" \
            "curl -sS --max-time 15 --location -H 'Host: $vhost' -w '\n%{http_code}' '$url'" \
            2>&1) || true
        status=${out##*$'\n'}
        if [ "$status" = 200 ] && grep -qi wikioasis <<<"$out"; then
            ok=1
            break
        fi
        [ "$try" = 3 ] || sleep 3
    done
    if [ $ok = 1 ]; then
        log "$name canary-ok"
    else
        log "$name canary-failed (last status: $status)"
        failed=1
    fi

    pool enable "$name"
    log "$name repool"
done
exit $failed
