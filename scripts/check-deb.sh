#!/usr/bin/env bash
# Builds the Debian package and checks what it installs, in a throw-away root (dpkg -x):
# the binary runs, every man page and completion script is there, and the example config
# is at /usr/share/doc/mwdeploy/examples/config.yaml.
#
#   scripts/check-deb.sh            # the check (CI: scripts/test.sh runs it)
#   cargo deb -p mwdeploy-cli       # the release package itself, in target/debian/
#
# The check builds with the dev profile, reusing the test build: a release build of the
# workspace would double CI's compile time, and the files packaged are the same.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "check-deb: cargo-deb is not installed; run scripts/install-deps.sh" >&2
    exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# cargo-deb warns that dev profiles are for checks like this one; the warning is expected
# and left out, anything else it says is shown, and its failure ends the check.
if ! cargo deb -p mwdeploy-cli --profile dev --fast -o "$out/" >"$out/log" 2>&1; then
    cat "$out/log" >&2
    echo "check-deb: cargo deb failed" >&2
    exit 1
fi
grep -v -e 'dev profile is not supported' -e 'To enable debug symbols' "$out/log" || true
deb=$(ls "$out"/mwdeploy_*.deb)
root="$out/root"
dpkg-deb -x "$deb" "$root"

fail=0
need() {
    if [[ ! -f $root/$1 ]]; then
        echo "check-deb: $deb does not install /$1" >&2
        fail=1
    fi
}
need usr/bin/mwdeploy
need usr/share/doc/mwdeploy/examples/config.yaml
need usr/share/bash-completion/completions/mwdeploy
need usr/share/zsh/vendor-completions/_mwdeploy
need usr/share/fish/vendor_completions.d/mwdeploy.fish
for page in mwdeploy-cli/assets/man/*.1; do
    need "usr/share/man/man1/$(basename "$page").gz"
done
[[ $fail -eq 0 ]] || exit 1

"$root/usr/bin/mwdeploy" --version
# The installed man page reads as one (a roff error would show here).
zcat "$root/usr/share/man/man1/mwdeploy.1.gz" | grep -q '^\.TH mwdeploy 1' \
    || { echo "check-deb: mwdeploy.1 is not a man page" >&2; exit 1; }
dpkg-deb -f "$deb" Package Version Depends
echo "check-deb: $(basename "$deb") installs $(find "$root" -type f | wc -l) files, all there"
