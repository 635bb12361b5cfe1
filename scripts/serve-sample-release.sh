#!/usr/bin/env bash
# Build a sample Flatcar release server tree in DIR and serve it on 127.0.0.1:PORT
# (no internet needed): DIR/amd64-usr/<version>/ with the bz2 image, version.txt, OEM
# sysexts and firmware, every file signed by a throwaway OpenPGP key
# (DIR/signing-key.asc), DIR/amd64-usr/current/version.txt, and a bakery under
# DIR/extensions/ with SHA256SUMS. Prints the server's PID; stop it with kill.
# Usage: serve-sample-release.sh DIR PORT
set -euo pipefail
dir=${1:?usage: serve-sample-release.sh DIR PORT}
port=${2:?usage: serve-sample-release.sh DIR PORT}
here=$(cd "$(dirname "$0")" && pwd)
version=4593.2.5
rm -rf "$dir" && mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export GNUPGHOME="$tmp/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'flatbake sample release <sample@localhost>' ed25519 sign never 2>/dev/null
gpg --batch --quiet --armor --export > "$dir/signing-key.asc"

bash "$here/make-fixture-image.sh" "$tmp/flatcar_production_image.bin" >/dev/null
rel="$dir/amd64-usr/$version"
bash "$here/make-fixture-release.sh" "$rel" --image "$tmp/flatcar_production_image.bin" --version "$version" --sign "$GNUPGHOME" 2>/dev/null
mkdir -p "$dir/amd64-usr/current"
cp "$rel/version.txt" "$rel/version.txt.sig" "$dir/amd64-usr/current/"

bash "$here/make-fixture-sysexts.sh" "$tmp/sysexts" >/dev/null
mkdir -p "$dir/extensions"
cp "$tmp/sysexts/wasmtime-v24.0.0-x86-64.raw" "$tmp/sysexts/docker-27.0.1-x86-64.raw" "$dir/extensions/"
mkdir -p "$dir/extensions/wasmtime"
cp "$tmp/sysexts/wasmtime.conf" "$dir/extensions/wasmtime/wasmtime.conf"
(cd "$dir/extensions" && sha256sum ./*.raw | sed 's# \./# #' > SHA256SUMS)
gpgconf --kill gpg-agent 2>/dev/null || true

python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/amd64-usr/current/version.txt')" 2>/dev/null && break
    sleep 0.1
done
echo "$pid"
