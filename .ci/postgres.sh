#!/usr/bin/env bash
# Install (when missing) and start a PostgreSQL server on 127.0.0.1 for the database tests, with
# role atelier / password atelier owning database atelier_test. Runs as root on Debian 12.
#
# Idempotent: running it twice leaves one running server and the same role and database.
# Works when run (`bash .ci/postgres.sh`) and when sourced (`. .ci/postgres.sh`); either way it prints the
# SQLAlchemy URL, and sourcing also exports it as ATELIER_TEST_POSTGRES_URL.

_atelier_postgres() (
    # A subshell, so `set -e` and the helper variables never leak into a shell that sources this file.
    set -euo pipefail

    as_postgres() { runuser -u postgres -- "$@"; }

    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "postgres.sh: installing PostgreSQL" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi

    # The newest installed major version; Debian 12 ships 15, but never hard-code it.
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)

    # The package normally creates the "main" cluster; images built with create_main_cluster=false do not.
    if ! pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {found=1} END {exit !found}'; then
        pg_createcluster "$version" main >&2
    fi

    # Loopback only: the test server must never be reachable from outside the machine.
    conf="/etc/postgresql/$version/main/conf.d/atelier-ci.conf"
    wanted="listen_addresses = '127.0.0.1'"
    changed=0
    if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
        echo "$wanted" >"$conf"
        changed=1
    fi

    status=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')
    if [ "$status" = "online" ] && [ "$changed" = 1 ]; then
        pg_ctlcluster "$version" main restart >&2
    elif [ "$status" != "online" ]; then
        pg_ctlcluster "$version" main start >&2
    fi

    port=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
    for _ in $(seq 1 60); do
        if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
        sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p "$port" || { echo "postgres.sh: server did not start on port $port" >&2; exit 1; }

    # Role and database, created only when missing; the password is (re)set every time so it is known.
    as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'atelier') THEN
        CREATE ROLE atelier LOGIN;
    END IF;
END
$$;
ALTER ROLE atelier WITH LOGIN PASSWORD 'atelier';
SQL
    if [ -z "$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'atelier_test'")" ]; then
        as_postgres createdb -p "$port" -O atelier atelier_test
    fi

    echo "postgresql+psycopg://atelier:atelier@127.0.0.1:$port/atelier_test"
)

if _atelier_pg_url=$(_atelier_postgres); then
    export ATELIER_TEST_POSTGRES_URL="$_atelier_pg_url"
    echo "$ATELIER_TEST_POSTGRES_URL"
    unset _atelier_pg_url
    unset -f _atelier_postgres
else
    echo "postgres.sh: could not start PostgreSQL (see messages above)" >&2
    # `return` when sourced, `exit` when run.
    return 1 2>/dev/null || exit 1
fi
