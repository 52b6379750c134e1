#!/usr/bin/env bash
# Fetch VictoriaMetrics 1.112 (and Alertmanager) from Debian trixie into a cache folder.
#
# Debian bookworm ships victoria-metrics 1.79.5, whose deduplication keeps an arbitrary
# value; the product needs 1.112 or newer. Trixie's package runs on bookworm. This script
# uses a private apt configuration (its own sources file, lists and cache), downloads the
# .deb files and unpacks them with `dpkg -x`. It never changes the system's apt sources.
#
# Usage: scripts/fetch-victoriametrics.sh [CACHE_DIR]   (default: .cache/vm)
# Prints the folder that holds the binaries (victoria-metrics, vmagent, vmauth, ...).
set -euo pipefail

cache=${1:-${VM_CACHE_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/.cache/vm"}}
bindir="$cache/bin"
packages=(victoria-metrics prometheus-alertmanager)

if [ -x "$bindir/victoria-metrics" ] && [ -x "$bindir/vmauth" ] && [ -x "$bindir/alertmanager" ]; then
    echo "$bindir"
    exit 0
fi

mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$cache/root" "$bindir"
keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg
[ -r "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$cache/apt/sources.list" <<SRC
deb [signed-by=$keyring] http://deb.debian.org/debian trixie main
SRC
: > "$cache/apt/status"

apt_opts=(
    -o "Dir::Etc::sourcelist=$cache/apt/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$cache/apt/lists"
    -o "Dir::State::status=$cache/apt/status"
    -o "Dir::Cache=$cache/apt/cache"
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
echo "fetching the trixie package index into $cache" >&2
apt-get "${apt_opts[@]}" -qq update >&2
rm -f "$cache"/debs/*.deb
(cd "$cache/debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}" >&2)
for deb in "$cache"/debs/*.deb; do
    dpkg -x "$deb" "$cache/root"
done
for tool in victoria-metrics vmagent vmauth vmalert vmalert-tool vmctl amtool; do
    if [ -x "$cache/root/usr/bin/$tool" ]; then ln -sf "$cache/root/usr/bin/$tool" "$bindir/$tool"; fi
done
if [ -x "$cache/root/usr/bin/prometheus-alertmanager" ]; then
    ln -sf "$cache/root/usr/bin/prometheus-alertmanager" "$bindir/alertmanager"
fi
for tool in victoria-metrics vmagent vmauth vmalert alertmanager; do
    [ -x "$bindir/$tool" ] || { echo "fetch-victoriametrics: $tool missing from the trixie package" >&2; exit 1; }
done
"$bindir/victoria-metrics" -version >&2
echo "$bindir"
