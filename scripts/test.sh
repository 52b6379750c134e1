#!/usr/bin/env bash
# Install everything the test suite needs, then run lint, types and every test.
#
# Installs missing Debian packages (apt-get), VictoriaMetrics 1.112 and Alertmanager
# from Debian trixie into .cache/vm (scripts/fetch-victoriametrics.sh, never touching
# the system's apt sources), the npm tools for the dashboard type check into
# .cache/node, and a virtual environment .venv with the test extras. Arguments go to
# pytest, e.g. `scripts/test.sh -k cycle`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_python
apt_install ca-certificates
command -v systemd-analyze >/dev/null || apt_install systemd
command -v npm >/dev/null || apt_install nodejs npm
VM_BIN_DIR=$(bash scripts/fetch-victoriametrics.sh)
export VM_BIN_DIR
# Debian's alertmanager reads its built-in templates from this fixed path, which an
# unpacked package does not fill; install them there (the alerting tests need them).
tmpl_src=.cache/vm/root/usr/share/prometheus/alertmanager
tmpl_dst=/usr/share/prometheus/alertmanager
for tmpl in default.tmpl email.tmpl; do
    if [ ! -f "$tmpl_dst/$tmpl" ]; then
        sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd install -D -m 0644 "$tmpl_src/$tmpl" "$tmpl_dst/$tmpl"
    fi
done
if [ -f scripts/fetch-node-tools.sh ]; then
    bash scripts/fetch-node-tools.sh >&2
fi
ensure_venv .venv -e '.[test]'

echo "== runtime-only install: --help with runtime dependencies alone" >&2
ensure_venv .cache/venv-runtime .
.cache/venv-runtime/bin/openai-cost-pusher --help >/dev/null

echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$code"
