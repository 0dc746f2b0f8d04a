#!/usr/bin/env bash
# Installs the Debian packages mwdeploy's tests and test fleet need:
# HAProxy, nginx, php-fpm and php-cli, OpenSSH (server and client), rsync, curl, git, patch
# (--patch on the staging checkout), socat,
# tmux (terminal tests of the dashboard), e2fsprogs (chattr: the test fleet's failing-disk fault)
# and sudo (a non-root deploy user with remote_sudo); and, through cargo, cargo-deb (the
# Debian package, scripts/check-deb.sh).
#
# Non-interactive and idempotent: a package whose command is already there is not installed
# again, and when every command is there apt is not touched at all (it returns at once).
# Runs as root, or through sudo. Services are not started by the install: the tests start
# their own instances.
set -euo pipefail

# Package -> a command it provides (php-fpm's binary carries the PHP version: php-fpm8.2).
packages=(haproxy nginx php-fpm php-cli openssh-server openssh-client rsync curl git patch socat tmux e2fsprogs sudo)
declare -A provides=(
    [haproxy]=haproxy
    [nginx]=nginx
    [php-fpm]='php-fpm*'
    [php-cli]=php
    [openssh-server]=sshd
    [openssh-client]=ssh
    [rsync]=rsync
    [curl]=curl
    [git]=git
    [patch]=patch
    [socat]=socat
    [tmux]=tmux
    [e2fsprogs]=chattr
    [sudo]=sudo
)

# Daemons live in sbin, which a non-root PATH may lack.
search_path="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

have() {
    local pattern=$1 dir
    local IFS=:
    for dir in $search_path; do
        # The pattern may be a glob (php-fpm*): let it expand, then test what it gave.
        for f in "$dir"/$pattern; do
            [[ -x $f && ! -d $f ]] && return 0
        done
    done
    return 1
}

# cargo-deb builds the Debian package (scripts/check-deb.sh); a cargo tool, not a Debian
# package: installed for this user, no root needed. Its version is pinned, as CI's is.
cargo_deb_version=3.8.0
if command -v cargo >/dev/null 2>&1; then
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "install-deps: cargo-deb missing: cargo install cargo-deb --version $cargo_deb_version --locked"
        cargo install cargo-deb --version "$cargo_deb_version" --locked
    fi
else
    echo "install-deps: cargo not found, so cargo-deb (for scripts/check-deb.sh) is not installed" >&2
fi

missing=()
for p in "${packages[@]}"; do
    if ! have "${provides[$p]}"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: every needed command is installed (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; install these Debian packages (or your system's equivalents): ${missing[*]}" >&2
    exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: not root and sudo not found; as root, run: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    if sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    elif [[ -t 0 ]]; then
        # sudo asks for the password on this terminal.
        echo "install-deps: missing ${missing[*]}: installing them through sudo"
        as_root=(sudo)
    else
        echo "install-deps: missing ${missing[*]}; not root, and sudo needs a password with no terminal to ask on; as root, run: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"

# Keep package scripts from starting nginx, php-fpm, haproxy or sshd on this host,
# unless the host already has a policy of its own (containers usually do).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# mwdeploy install-deps: start no service during the install\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

# Never stop at a prompt: no debconf questions, keep existing config files.
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

still=()
for p in "${missing[@]}"; do
    have "${provides[$p]}" || still+=("$p")
done
if [[ ${#still[@]} -ne 0 ]]; then
    echo "install-deps: installed, but still no command for: ${still[*]}" >&2
    exit 1
fi
echo "install-deps: done"
