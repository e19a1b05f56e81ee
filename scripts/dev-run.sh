#!/bin/sh
# `make run`: a development tpops on the embedded default (SQLite), plain
# POP3 on 127.0.0.1:1110, in the foreground, logging to the terminal.
set -e
BUILD=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/$BUILD"
rundir=${TPOPS_RUNDIR:-$top/run}

if [ "$(id -u)" = 0 ]; then
	# tpops never serves as root: it drops to nobody, who must be able to
	# reach the database directory. A checkout under /root is not
	# reachable by nobody, so the run directory moves to /var/tmp then.
	run_user=nobody run_group=nogroup
	mkdir -p "$rundir"
	chown "$run_user:$run_group" "$rundir"
	if ! runuser -u "$run_user" -- test -w "$rundir" 2>/dev/null; then
		rundir=/var/tmp/tpops-run
		mkdir -p "$rundir"
		chown "$run_user:$run_group" "$rundir"
		echo "note: $top is not reachable by user $run_user; using $rundir"
	fi
else
	run_user=$(id -un) run_group=$(id -gn)
	mkdir -p "$rundir"
fi

conf="$rundir/tpops.conf"
if [ ! -e "$conf" ]; then
	cat > "$conf" <<EOT
# Development configuration written by \`make run\`; see docs/tpops.conf.example.
Port: 1110
Listen: 127.0.0.1
Hostname: localhost
Database: sqlite
SQLite_Path: $rundir/tpops.db
Mailbox: MySQL
User: $run_user
Group: $run_group
Log: stderr
LogLevel: info
Foreground: yes
AuthFailureDelay: 2
ControlSocket: $rundir/control
MetricsListen: 127.0.0.1:1119
EOT
fi
# tpops-admin's socket in the run directory, not /run/tpops (a
# configuration written before the key existed gets it too)
grep -qi '^ControlSocket' "$conf" || echo "ControlSocket: $rundir/control" >> "$conf"

"$bin/tpops-dbinit" -c "$conf"
cat <<EOT

tpops is starting on 127.0.0.1:1110. In another terminal:
  add a user:        $bin/tpops-useradd -c $conf alice secret alice@example.com
  store a message:   printf 'Subject: hello\n\nHello, world.\n' | $bin/tpops-store -c $conf alice@example.com
  read it:           curl pop3://alice:secret@127.0.0.1:1110/1
  who is logged in:  $bin/tpops-admin -c $conf who
  the metrics:       $bin/tpops-admin -c $conf stats
                     (or curl http://127.0.0.1:1119/metrics when MetricsListen is set)
Stop with Ctrl-C.

EOT
exec "$bin/tpops" -c "$conf"
