#!/usr/bin/env bash
# Set up and run openai-cost-pusher from this checkout, with a VictoriaMetrics to push to.
#
#   scripts/run.sh                 push every 15 minutes (Ctrl+C stops)
#   scripts/run.sh --once          one cycle, then exit
#   scripts/run.sh report [...]    each project's daily spend, from what is stored
#   scripts/run.sh verify [...]    compare what is stored with the Admin API
#
# Data: with OPENAI_ADMIN_KEY or OPENAI_ADMIN_KEY_FILE set (in the environment or
# ./.env) your organization's real costs; without one the built-in demo organization
# (simulated, every sample labelled demo="true").
#
# Where it pushes: VM_PUSH_URL (environment, ./.env or --push-url) if set; else whatever
# answers at http://127.0.0.1:8428 (a port-forward, a local server); else a local
# single-node VictoriaMetrics that this script starts on 127.0.0.1:8428 (installed into
# .cache/vm if missing) with its data in .data/victoria-metrics (the demo's in
# .data/demo/victoria-metrics, so that it never mixes with real data), reused by the
# next run.
# The script stops that server, by its process id, when the command ends.
# LOCAL_VM_PORT (default 8428) and LOCAL_VM_DATA (its data folder) move that local
# server elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

say() { echo "openai-cost-pusher: $*" >&2; }

ensure_python
ensure_venv .venv -e .
cli=.venv/bin/openai-cost-pusher

env_or_dotenv() {
    # env_or_dotenv VAR: succeed if VAR is set in the environment or in ./.env
    [ -n "${!1:-}" ] && return 0
    [ -f .env ] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?$1=[^[:space:]]" .env
}

command=push
case "${1:-}" in report | verify) command=$1 ;; esac

demo=1
if env_or_dotenv OPENAI_ADMIN_KEY || env_or_dotenv OPENAI_ADMIN_KEY_FILE; then demo=0; fi
args=("$@")
if [ "$demo" -eq 1 ]; then
    case " $* " in *" --demo "*) ;; *)
        if [ "$command" = push ]; then args=(--demo "${args[@]}"); else args+=(--demo); fi ;;
    esac
    say "no OPENAI_ADMIN_KEY configured: using the demo organization (simulated data," \
        "labelled demo=\"true\"); set OPENAI_ADMIN_KEY in .env for your real spend"
else
    say "using your organization's real data (OPENAI_ADMIN_KEY is set)"
fi
if [ "$command" = push ]; then
    case " $* " in *" --dry-run "*) ;; *) args+=(--show-report) ;; esac
fi

port=${LOCAL_VM_PORT:-8428}
local_root=http://127.0.0.1:$port
if [ "$demo" -eq 1 ]; then
    data_dir=${LOCAL_VM_DATA:-.data/demo/victoria-metrics}
else
    data_dir=${LOCAL_VM_DATA:-.data/victoria-metrics}
fi
logs_dir=$(dirname "$data_dir")
vm_pid=""

answers() {
    # answers URL: succeed if an HTTP server answers /health at URL within 2 s
    .venv/bin/python - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
PY
}

start_local_vm() {
    # start_local_vm: start a single-node VictoriaMetrics on 127.0.0.1:$port; set vm_pid
    mkdir -p "$data_dir"
    local bindir
    if ! bindir=$(bash scripts/fetch-victoriametrics.sh 2>>"$logs_dir/fetch.log"); then
        say "could not install VictoriaMetrics (see $logs_dir/fetch.log)"
        return 1
    fi
    # its own session: Ctrl+C reaches the pusher, and this script stops the server
    setsid "$bindir/victoria-metrics" \
        -httpListenAddr="127.0.0.1:$port" \
        -storageDataPath="$data_dir" \
        -retentionPeriod=400d \
        -dedup.minScrapeInterval=1ms \
        -search.latencyOffset=0s \
        -loggerLevel=ERROR >>"$logs_dir/victoria-metrics.log" 2>&1 &
    vm_pid=$!
    for _ in $(seq 1 100); do
        answers "$local_root" && return 0
        kill -0 "$vm_pid" 2>/dev/null || break
        sleep 0.2
    done
    say "the local VictoriaMetrics did not start (see $logs_dir/victoria-metrics.log)"
    stop_local_vm
    return 1
}

stop_local_vm() {
    [ -n "$vm_pid" ] || return 0
    kill -TERM "$vm_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$vm_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$vm_pid" 2>/dev/null || true
    wait "$vm_pid" 2>/dev/null || true
    vm_pid=""
}
trap stop_local_vm EXIT

if env_or_dotenv VM_PUSH_URL || case " $* " in *" --push-url "*) true ;; *) false ;; esac; then
    say "pushing to VM_PUSH_URL / --push-url as configured; starting no VictoriaMetrics"
elif answers "$local_root"; then
    say "something answers at $local_root: using it, starting nothing"
    export VM_PUSH_URL="$local_root/api/v1/import/prometheus"
elif start_local_vm; then
    export VM_PUSH_URL="$local_root/api/v1/import/prometheus"
    say "started a local VictoriaMetrics at $local_root (process $vm_pid), data in" \
        "$data_dir (kept for the next run); it stops when this command ends"
elif [ "$demo" -eq 0 ] || [ "$command" != push ]; then
    say "error: no VictoriaMetrics to use: set VM_PUSH_URL, or start one on $local_root"
    exit 1
else
    say "no VictoriaMetrics could be had: showing the demo's spend without storing it"
    export VM_PUSH_URL="$local_root/api/v1/import/prometheus"
fi
if [ "$command" = push ]; then
    say "later, to see the spend: scripts/run.sh report; to check it against OpenAI:" \
        "scripts/run.sh verify (the command itself is .venv/bin/openai-cost-pusher," \
        "not on PATH)"
fi

# the command runs as a child, so that SIGTERM to this script reaches it too
"$cli" "${args[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do
    status=0
    wait "$child" || status=$?
done
exit "$status"
