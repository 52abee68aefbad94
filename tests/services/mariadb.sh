#!/bin/sh
# MariaDB (Debian package "mariadb-server", 10.11 on bookworm) for the SQL connector's DB-API tests.
# A server already answering on the port (the machine's own: root, empty password, database `test`) is
# reused; otherwise a private instance runs from a throw-away datadir under $SERVICES_DIR/mariadb, root
# with an empty password over TCP, database `test` created.
# Usage: mariadb.sh start|stop|status   Env: MARIADB_PORT (3306)
# URI: mysql://root@127.0.0.1:$MARIADB_PORT/test   (pymysql.connect(host="127.0.0.1", port=..., user="root",
# password="", database="test"))
. "$(dirname "$0")/_lib.sh"
svc_init mariadb
PORT=${MARIADB_PORT:-3306}

do_start() {
  pre_start "$PORT" || return 0
  apt_need mariadb-server
  user=$(id -un)
  if [ "$(id -u)" = 0 ]; then user=mysql; chown -R mysql:mysql "$STATE/data"; chmod 755 "$STATE"; fi
  mariadb-install-db --no-defaults --datadir="$STATE/data" --user="$user" \
    --auth-root-authentication-method=normal --skip-test-db >"$LOG" 2>&1 \
    || die "mariadb-install-db failed (log: $LOG)"
  start_bg /usr/sbin/mariadbd --no-defaults --datadir="$STATE/data" --user="$user" \
    --bind-address=127.0.0.1 --port="$PORT" --socket="$STATE/data/mysqld.sock" \
    --pid-file="$STATE/data/mariadbd.pid" --skip-name-resolve --innodb-flush-log-at-trx-commit=2 \
    --innodb-buffer-pool-size=64M
  wait_port "$PORT" 60
  i=0
  until mariadb --no-defaults -h 127.0.0.1 -P "$PORT" -u root -e "CREATE DATABASE IF NOT EXISTS test" \
    >>"$LOG" 2>&1; do
    i=$((i + 1)); [ $i -gt 50 ] && { tail -n 20 "$LOG" >&2; die "cannot create database test"; }
    sleep 0.2
  done
  say "started (pid $(cat "$PIDF"), port $PORT) mysql://root@127.0.0.1:$PORT/test"
}
do_stop() { generic_stop 30; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
