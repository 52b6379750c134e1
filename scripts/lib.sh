# Shared set-up steps for scripts/run.sh and scripts/test.sh (sourced, not run).
# Installs what a fresh Debian or Ubuntu machine lacks, with apt-get as root (or sudo).

_apt_updated=0
apt_install() {
    # apt_install PACKAGE...: install Debian packages that are missing.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    if [ "$_apt_updated" -eq 0 ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_python() {
    # ensure_python: python3 with venv and pip support.
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
        local ver
        ver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${ver}-venv" || apt_install python3-venv
    fi
    python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
        echo "openai-cost-pusher needs Python 3.11 or newer; found $(python3 --version)" >&2
        return 1
    }
}

ensure_venv() {
    # ensure_venv DIR SPEC: a virtual environment at DIR with SPEC installed (pip args).
    local dir=$1; shift
    [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
