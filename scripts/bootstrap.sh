#!/usr/bin/env bash
# Check the service binaries the test suite starts itself; install the observability tools.
#
# The tests start throwaway redis-server, PostgreSQL and MariaDB processes (tests/services/)
# and run promtool on the Prometheus rules. A missing binary is reported with the Debian
# package that provides it. As root, Debian's `prometheus` package (promtool) is installed with
# apt-get. Exit status: non-zero when something is missing and CI or
# INTERLOCK_REQUIRE_SERVICES is set; otherwise the tests report what they cannot run.
set -euo pipefail

missing=()   # "binary:package"

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]; }

need() {   # need PACKAGE BINARY [ALTERNATIVE...]
    local package=$1 binary
    shift
    for binary in "$@"; do
        have "$binary" && return 0
    done
    missing+=("$1:$package")
}

need redis-server redis-server
need redis-server redis-cli
need mariadb-server mariadbd mysqld
need mariadb-server mariadb-install-db mysql_install_db
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && ! have postgres; then
    missing+=("postgres (/usr/lib/postgresql/*/bin):postgresql")
fi

# Tools the observability tests run, installed from Debian's packages when we may.
declare -A tools=([promtool]=prometheus [amtool]=prometheus-alertmanager [docker-compose]=docker-compose)
to_install=()
for tool in "${!tools[@]}"; do
    have "$tool" || to_install+=("${tools[$tool]}")
done
if ((${#to_install[@]})) && [[ $(id -u) -eq 0 ]] && have apt-get; then
    echo "bootstrap: installing Debian packages: ${to_install[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
        echo "bootstrap: apt-get update failed; cannot install ${to_install[*]}" >&2
    elif ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${to_install[@]}" >/dev/null; then
        echo "bootstrap: apt-get install ${to_install[*]} failed" >&2
    fi
fi
for tool in "${!tools[@]}"; do
    have "$tool" || missing+=("$tool:${tools[$tool]}")
done

if ((${#missing[@]})); then
    packages=$(printf '%s\n' "${missing[@]}" | cut -d: -f2 | sort -u | tr '\n' ' ')
    echo "bootstrap: missing: $(printf '%s ' "${missing[@]%%:*}")" >&2
    echo "bootstrap: install with: apt-get install ${packages% }" >&2
    if [[ -n ${CI:-} || ${INTERLOCK_REQUIRE_SERVICES:-0} == 1 ]]; then
        exit 1
    fi
fi
exit 0
