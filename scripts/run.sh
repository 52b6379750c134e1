#!/usr/bin/env bash
# Set up and run openai-cost-pusher from this checkout.
#
# With OPENAI_ADMIN_KEY or OPENAI_ADMIN_KEY_FILE set (in the environment or ./.env) it
# pushes your organization's real costs. Without one it says so and runs the built-in
# demo organization instead: simulated data, every sample labelled demo="true".
# Extra arguments go to the command, e.g. `scripts/run.sh --once` or `--dry-run`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_python
ensure_venv .venv -e .

has_key=0
for var in OPENAI_ADMIN_KEY OPENAI_ADMIN_KEY_FILE; do
    [ -n "${!var:-}" ] && has_key=1
    [ -f .env ] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?${var}=[^[:space:]]" .env && has_key=1
done
if [ "$has_key" -eq 1 ]; then
    exec .venv/bin/openai-cost-pusher "$@"
fi
echo "No OPENAI_ADMIN_KEY configured: running the demo organization (simulated data," \
     "labelled demo=\"true\"). Set OPENAI_ADMIN_KEY in .env for real data." >&2
exec .venv/bin/openai-cost-pusher --demo "$@"
