#!/bin/bash
# tpops against Dovecot on the same machine, in the same run (issue 7).
#
#   bench/run.sh                 every scenario (what `make bench` runs)
#   bench/run.sh sessions retr   some of them: sessions retr idle maildir
#                                deliver rss metrics tls-sessions tls-retr tls-storm lmtp
#
# The metrics scenario is tpops against itself: sessions per second, and
# the daemon's CPU time per session, with the counters off (no
# ControlSocket, no MetricsListen) and on (both, the metrics page scraped
# every second); both daemons run at once and take turns,
# BENCH_METRICS_REPEAT rounds (default 5); Dovecot takes no part.
#
# The TLS scenarios (issue 17) run every server with each certificate of
# BENCH_CERTS in turn, over POP3S and STLS (BENCH_TLS_MODES):
#   tls-sessions  full sessions at each concurrency, with full handshakes
#                 and with resumption (each client slot offers its last
#                 session ticket: loadgen --resume); with the CPU time per
#                 session of the server (all its processes) and of loadgen
#   tls-retr      RETR 10 MiB (LF and CRLF) and 1000 x 100 KiB at 1 and 8
#                 connections
#   tls-storm     RETR of 4 connections alone, then while 64 others do
#                 nothing but full TLS handshakes (POP3S)
#
# Environment:
#   BENCH_REPEAT=3        repetitions of each scenario (servers alternate)
#   BENCH_IDLE_REPEAT=1   repetitions of the idle scenario: PSS varies by a
#                         few percent between rounds, and one round makes
#                         Dovecot fork 10,000 processes twice (~4 minutes)
#   BENCH_SECONDS=2       length of one sessions measurement
#   BENCH_CONCURRENCY="1 16 64"   BENCH_IDLE="1000 5000 10000"
#   BENCH_SERVERS="tpops tpops-maildir tpops-mysql dovecot-fast dovecot-stock"
#                         (tpops-mysql: the same tpops on a private MariaDB
#                         that this script starts, with the same users and
#                         messages, in the scenarios of MYSQL_SCENARIOS;
#                         left out, with a note, without mariadbd;
#                         tpops-maildir: the same tpops with Mailbox: Maildir
#                         on Dovecot's Maildirs; left out, with a note, when
#                         `tpops -t` does not accept Mailbox: Maildir)
#   BENCH_QUIET_WAIT=3    before each server's turn, wait up to this many
#                         seconds for the machine's other load to drop
#   BENCH_MAILDIR_COUNT=100000    BENCH_DELIVER=300
#   BENCH_LMTP_CONNECTIONS="1 4"  LMTP connections kept open (lmtp scenario)
#   BENCH_CERTS="ecdsa rsa"       ECDSA P-256 and RSA-2048 certificates
#   BENCH_TLS_MODES="pop3s stls"  implicit TLS, STLS
#   BENCH_RESUME=1        tls-sessions also with resumption (0: not)
#   BENCH_DIR=DIR         work directory (default: a new one under /tmp,
#                         removed at the end); fixtures already in DIR are
#                         reused
#   BENCH_KEEP=1          keep the work directory
#   BENCH_OUT=FILE        also write the report (markdown) to FILE
#   TPOPS_BUILD=DIR       where tpops and its tools are (default build/)
#   BENCH_SERVER_CPUS=LIST, BENCH_CLIENT_CPUS=LIST   (taskset lists, both or
#                         neither; e.g. 1 and 0) the servers, their
#                         databases and this script on the first, the load
#                         generator alone on the second: the server-bound
#                         figures, as if the clients were on other machines.
#                         Default: everything shares every CPU.
#   DOVECOT_POP3_CLIENT_LIMIT=1   clients per pop3 process, fast Dovecot
#
# The servers: tpops (build/tpops, SQLite store, Foreground, Log stderr) and
# a private Dovecot (Debian dovecot-pop3d, own dovecot.conf and base_dir in
# the work directory, loopback only, passwd-file with the passwords tpops
# stores) in two forms: "dovecot-stock" (the defaults, limits raised) and
# "dovecot-fast" (service_count = 0 and process_min_avail for pop3-login
# and pop3). Everything listens on free 127.0.0.1 ports. Needs root (the
# servers drop to nobody / Dovecot's users).
set -u
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TPOPS_BUILD:-$ROOT/build}
REPEAT=${BENCH_REPEAT:-3}
IDLE_REPEAT=${BENCH_IDLE_REPEAT:-1}
SECS=${BENCH_SECONDS:-2}
CONCS=${BENCH_CONCURRENCY:-"1 16 64"}
IDLE_SIZES=${BENCH_IDLE:-"1000 5000 10000"}
SERVERS=${BENCH_SERVERS:-"tpops tpops-maildir tpops-mysql dovecot-fast dovecot-stock"}
QUIET_WAIT=${BENCH_QUIET_WAIT:-3}
MAILDIR_COUNT=${BENCH_MAILDIR_COUNT:-100000}
DELIVER_COUNT=${BENCH_DELIVER:-300}
METRICS_REPEAT=${BENCH_METRICS_REPEAT:-5}
METRICS_CONCS=${BENCH_METRICS_CONCURRENCY:-"16 64"}
POP3_CLIENT_LIMIT=${DOVECOT_POP3_CLIENT_LIMIT:-1}
LMTP_CONNECTIONS=${BENCH_LMTP_CONNECTIONS:-"1 4"}
# Dovecot's LMTP server (Debian dovecot-lmtpd), for the lmtp scenario
DOVECOT_LMTP=no
[ -x /usr/lib/dovecot/lmtp ] && DOVECOT_LMTP=yes
NPROC=$(nproc)
PY=/usr/bin/python3
RUN_USER=nobody
RUN_GROUP=nogroup
RUN_UID=$(id -u $RUN_USER)
RUN_GID=$(getent group $RUN_GROUP | cut -d: -f3)

CERTS=${BENCH_CERTS:-"ecdsa rsa"}
TLS_MODES=${BENCH_TLS_MODES:-"pop3s stls"}
RESUME=${BENCH_RESUME:-1}
CERT=ecdsa # the certificate the servers start with

ALL_SCENARIOS="sessions retr idle maildir deliver rss metrics tls-sessions tls-retr tls-storm lmtp"
SCENARIOS=${*:-$ALL_SCENARIOS}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

for s in $SCENARIOS; do
	case " $ALL_SCENARIOS " in *" $s "*) ;; *) die "unknown scenario '$s' (one of: $ALL_SCENARIOS)" ;; esac
done
[ "$(id -u)" = 0 ] || die "run as root: the servers bind, then drop to $RUN_USER / Dovecot's users"
[ -x "$BUILD/tpops" ] || die "$BUILD/tpops is missing: run 'make' (or 'make bench')"
command -v dovecot >/dev/null || die "dovecot is missing: apt-get install dovecot-pop3d"
DOVECOT_LDA=/usr/lib/dovecot/dovecot-lda
[ -x $DOVECOT_LDA ] || DOVECOT_LDA=$(command -v dovecot-lda || true)

# CPUs of their own for the servers and the load generators: this script
# (and so every server and database it starts) moves to the servers' CPUs
SERVER_CPUS=${BENCH_SERVER_CPUS:-}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-}
if [ -n "$SERVER_CPUS$CLIENT_CPUS" ]; then
	[ -n "$SERVER_CPUS" ] && [ -n "$CLIENT_CPUS" ] ||
		die "set both BENCH_SERVER_CPUS and BENCH_CLIENT_CPUS, or neither"
	command -v taskset >/dev/null || die "taskset is missing: apt-get install util-linux"
	taskset -c "$CLIENT_CPUS" true 2>/dev/null ||
		die "cannot run on CPUs '$CLIENT_CPUS' (BENCH_CLIENT_CPUS)"
	taskset -p -c "$SERVER_CPUS" $$ >/dev/null 2>&1 ||
		die "cannot run on CPUs '$SERVER_CPUS' (BENCH_SERVER_CPUS)"
fi

# 10,000 idle sessions need more than 10,000 descriptors in each process
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" -ge 10100 ] || note "ulimit -n is $(ulimit -n): the 10,000-session idle test will fail"

# ---- work directory ----
if [ -n "${BENCH_DIR:-}" ]; then
	W=$BENCH_DIR
	mkdir -p "$W"
else
	W=$(mktemp -d /tmp/tpops-bench.XXXXXX)
fi
chmod 755 "$W"
RESULTS=$W/results.tsv
: > "$RESULTS"
BIN=$W/bin
mkdir -p "$BIN"
# a snapshot: other work may rebuild build/ while this runs
cp "$BUILD"/tpops "$BUILD"/tpops-* "$BIN"/ 2>/dev/null
make -s -C "$ROOT/bench" OUT="$ROOT/build/bench" >/dev/null || die "cannot build bench/loadgen.c and bench/handshake_cost.c"
LOADGEN=$ROOT/build/bench/loadgen

# The load generators on CPUs of their own (BENCH_CLIENT_CPUS): loadgen
# through a wrapper, lmtp_send.py through ON_CLIENT_CPUS.
ON_CLIENT_CPUS=()
if [ -n "$CLIENT_CPUS" ]; then
	printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$CLIENT_CPUS" "$LOADGEN" > "$W/loadgen-pinned"
	chmod 755 "$W/loadgen-pinned"
	LOADGEN=$W/loadgen-pinned
	ON_CLIENT_CPUS=(taskset -c "$CLIENT_CPUS")
fi

PIDS=""
cleanup() {
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $PIDS; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	if [ -z "${BENCH_DIR:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$W"
	else
		note "work directory kept: $W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	$PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# record SCENARIO METRIC SERVER VALUE
record() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$REP" "$4" >> "$RESULTS"
}

# field KEY LINE: the value of key=value in a loadgen result line
field() {
	local key=$1 line=$2
	sed -n "s/.*\\b$key=\\([^ ]*\\).*/\\1/p" <<<"$line"
}

as_run_user() {
	chown -R $RUN_USER:$RUN_GROUP "$@"
}

# ---- tpops ----
T=$W/tpops
TCONF=$T/tpops.conf
TPOPS_PORT=$(free_port)
TPOPS_PID=""

tpops_setup() {
	[ -e "$T/.done" ] && return
	mkdir -p "$T"
	as_run_user "$T"
	cat > "$TCONF" <<EOF
# tpops benchmark configuration
Port: $TPOPS_PORT
Listen: 127.0.0.1
Hostname: bench.test
Database: sqlite
SQLite_Path: $T/tpops.db
Mailbox: MySQL
Log: stderr
LogLevel: info
Foreground: yes
User: $RUN_USER
Group: $RUN_GROUP
MaxConnections: 20000
MaxConnectionsPerIP: 20000
AuthFailureDelay: 0
ControlSocket: $T/control
TLS_Port: $(free_port)
TLS_Cert: $W/certs/ecdsa.crt
TLS_Key: $W/certs/ecdsa.key
EOF
	"$BIN/tpops-dbinit" -c "$TCONF" >/dev/null || die "tpops-dbinit failed"
	touch "$T/.done"
}

tpops_conf_port() {
	sed -i "s/^Port: .*/Port: $TPOPS_PORT/" "$TCONF"
}

# The configurations a fixture goes into: the SQLite store's, and
# tpops-mysql's while the fixtures of one of MYSQL_SCENARIOS are made
fixture_confs() {
	echo "$TCONF"
	[ "$FIXTURE_MYSQL" = yes ] && echo "$MCONF"
	return 0
}

# tpops_user LOGIN PASSWORD plain|sha512 [MAILDIR]
tpops_user() {
	local opt="" conf
	[ "$3" = plain ] && opt=--plain
	for conf in $(fixture_confs); do
		"$BIN/tpops-useradd" -c "$conf" $opt "$1" "$2" "$1@bench.test" ${4:+"$4"} >/dev/null ||
			die "tpops-useradd $1 ($conf) failed"
	done
}

# tpops_store LOGIN FILE...
tpops_store() {
	local login=$1 conf
	shift
	for conf in $(fixture_confs); do
		"$BIN/tpops-store" -c "$conf" "$login@bench.test" "$@" ||
			die "tpops-store for $login ($conf) failed"
	done
}

# ---- tpops on MariaDB (tpops-mysql) ----
# A private MariaDB server in the work directory (its own data directory,
# a Unix socket, no TCP), started once and left running for the whole
# run: the same tpops, Database: mysql, with the same users and messages.
# MariaDB's settings are its defaults (a commit is flushed to disk), but
# for a buffer pool that holds the fixtures.
MY=$W/mariadb
MCONF=$T/tpops-mysql.conf
MYSQL_SCENARIOS="sessions retr deliver lmtp tls-sessions tls-retr tls-storm"
FIXTURE_MYSQL=no

mysql_start() {
	local mariadbd install client
	mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
	install=$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)
	client=$(command -v mariadb || echo /usr/bin/mariadb)
	if [ ! -x "$mariadbd" ] || [ ! -x "$install" ] || [ ! -x "$client" ]; then
		echo "tpops-mysql: skipped: no MariaDB server (apt-get install mariadb-server)"
		return 1
	fi
	if [ ! -d "$MY/data/mysql" ]; then
		mkdir -p "$MY"
		chmod 755 "$MY"
		"$install" --no-defaults --datadir="$MY/data" --auth-root-authentication-method=normal \
			--skip-test-db --user=root > "$MY/install.log" 2>&1 ||
			die "mariadb-install-db failed (see $MY/install.log)"
	fi
	"$mariadbd" --no-defaults --datadir="$MY/data" --socket="$MY/mysqld.sock" --skip-networking \
		--pid-file="$MY/mariadbd.pid" --log-error="$MY/error.log" --user=root \
		--max-connections=1000 --innodb-buffer-pool-size=1G &
	local pid=$!
	PIDS="$PIDS $pid"
	for _ in $(seq 1 600); do
		"$client" --socket="$MY/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
		if ! kill -0 $pid 2>/dev/null; then
			tail -20 "$MY/error.log" >&2
			die "mariadbd exited at start"
		fi
		sleep 0.1
	done
	chmod 777 "$MY/mysqld.sock" || die "mariadbd does not answer (see $MY/error.log)"
	"$client" --socket="$MY/mysqld.sock" -uroot -e "
		CREATE DATABASE IF NOT EXISTS tpops_bench;
		CREATE USER IF NOT EXISTS 'tpops'@'localhost' IDENTIFIED BY 'bench';
		GRANT ALL PRIVILEGES ON tpops_bench.* TO 'tpops'@'localhost';" ||
		die "cannot create the MariaDB database for tpops-mysql"
	if [ ! -e "$MCONF" ]; then
		{
			sed -e 's/^Database: .*/Database: mysql/' -e '/^SQLite_Path:/d' \
				-e "s/^Port: .*/Port: $(free_port)/" "$TCONF"
			printf 'MySQL_Server: localhost\nMySQL_Socket: %s\n' "$MY/mysqld.sock"
			printf 'MySQL_User: tpops\nMySQL_Pass: bench\nMySQL_DB: tpops_bench\n'
		} > "$MCONF"
		"$BIN/tpops-dbinit" -c "$MCONF" >/dev/null || die "tpops-dbinit (tpops-mysql) failed"
	fi
	return 0
}

wait_port() { # PORT PID NAME LOG
	for _ in $(seq 1 200); do
		if ! kill -0 "$2" 2>/dev/null; then
			tail -20 "$4" >&2
			die "$3 exited at start"
		fi
		if $PY -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$1),1); s.recv(100)" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	tail -20 "$4" >&2
	die "$3 does not answer on port $1"
}

# certificates: ECDSA P-256 and RSA-2048, self-signed for bench.test
make_certs() {
	mkdir -p "$W/certs"
	[ -e "$W/certs/rsa.key" ] && return
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj /CN=bench.test -keyout "$W/certs/ecdsa.key" -out "$W/certs/ecdsa.crt" 2>/dev/null &&
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench.test \
			-keyout "$W/certs/rsa.key" -out "$W/certs/rsa.crt" 2>/dev/null ||
		die "openssl req failed"
	chmod 600 "$W"/certs/*.key
}

# cert_conf CONF: CONF with the certificate $CERT (a file beside it)
cert_conf() {
	local out=${1%.conf}-$CERT.conf
	sed -e "s|^TLS_Cert: .*|TLS_Cert: $W/certs/$CERT.crt|" \
		-e "s|^TLS_Key: .*|TLS_Key: $W/certs/$CERT.key|" "$1" > "$out"
	echo "$out"
}

start_tpops() { # [CONF]
	local conf
	conf=$(cert_conf "${1:-$TCONF}")
	"$BIN/tpops" -c "$conf" >> "$T/tpops.log" 2>&1 &
	TPOPS_PID=$!
	PIDS="$PIDS $TPOPS_PID"
	wait_port "$(sed -n 's/^Port: //p' "$conf")" "$TPOPS_PID" tpops "$T/tpops.log"
	SERVER_PID=$TPOPS_PID
	SERVER_PORT=$(sed -n 's/^Port: //p' "$conf")
	SERVER_TLS_PORT=$(sed -n 's/^TLS_Port: //p' "$conf")
}

stop_pid() { # PID
	local p=$1
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 1 300); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	PIDS=$(sed "s/ $p\\b//" <<<"$PIDS")
}

# ---- Dovecot ----
MAIL=$W/mail            # Dovecot's Maildirs: MAIL/LOGIN/Maildir
PASSWD=$W/dovecot.passwd
declare -A DOVECOT_PORT DOVECOT_TLS_PORT

dovecot_ssl_conf() { # MODE: Dovecot with the certificate $CERT
	cat > "$W/$1/ssl.conf" <<EOF
ssl = yes
ssl_cert = <$W/certs/$CERT.crt
ssl_key = <$W/certs/$CERT.key
EOF
}

dovecot_conf() { # MODE
	local mode=$1 d=$W/$1
	mkdir -p "$d/run" "$d/state"
	dovecot_ssl_conf "$mode"
	DOVECOT_PORT[$mode]=$(free_port)
	DOVECOT_TLS_PORT[$mode]=$(free_port)
	{
		cat <<EOF
# tpops benchmark: private Dovecot, $mode
# (generated by bench/run.sh; see docs/BENCHMARKS.md)
base_dir = $d/run
state_dir = $d/state
instance_name = tpops-bench-$mode
protocols = pop3$([ $DOVECOT_LMTP = yes ] && echo " lmtp")
listen = 127.0.0.1
# the certificate: ssl.conf, written before each start (BENCH_CERTS)
!include $d/ssl.conf
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
log_path = $d/dovecot.log
mail_location = maildir:~/Maildir
pop3_lock_session = yes
# raised so that it can take the load (10,000 sessions)
default_process_limit = 12000
default_client_limit = 30000
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = $PASSWD
}
# LMTP (the lmtp scenario): RCPT TO:<d0@bench.test> is the user d0; the
# socket is base_dir/lmtp
protocol lmtp {
  auth_username_format = %Ln
}
userdb {
  driver = passwd-file
  args = $PASSWD
}
EOF
		if [ "$mode" = dovecot-fast ]; then
			cat <<EOF
# high-performance mode: no fork per session
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${DOVECOT_PORT[$mode]}
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = ${DOVECOT_TLS_PORT[$mode]}
    ssl = yes
  }
  service_count = 0
  process_min_avail = $NPROC
  client_limit = 30000
}
service pop3 {
  service_count = 0
  process_min_avail = $NPROC
  client_limit = $POP3_CLIENT_LIMIT
  process_limit = 12000
}
EOF
		else
			cat <<EOF
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${DOVECOT_PORT[$mode]}
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = ${DOVECOT_TLS_PORT[$mode]}
    ssl = yes
  }
}
# (Dovecot's own default for pop3 is 1024, below default_process_limit)
service pop3 {
  process_limit = 12000
}
EOF
		fi
	} > "$d/dovecot.conf"
	doveconf -n -c "$d/dovecot.conf" > "$d/doveconf-n.txt" 2>&1 ||
		{ cat "$d/doveconf-n.txt" >&2; die "doveconf -n -c $d/dovecot.conf failed"; }
}

start_dovecot() { # MODE
	local mode=$1 d=$W/$1
	[ -e "$d/dovecot.conf" ] || dovecot_conf "$mode"
	dovecot_ssl_conf "$mode"
	dovecot -F -c "$d/dovecot.conf" >> "$d/dovecot.log" 2>&1 &
	local pid=$!
	PIDS="$PIDS $pid"
	wait_port "${DOVECOT_PORT[$mode]}" "$pid" "dovecot ($mode)" "$d/dovecot.log"
	SERVER_PID=$pid
	SERVER_PORT=${DOVECOT_PORT[$mode]}
	SERVER_TLS_PORT=${DOVECOT_TLS_PORT[$mode]}
	# fast: let process_min_avail start its processes
	[ "$mode" = dovecot-fast ] && sleep 0.5
	return 0
}

# lmtp_conf CONF: CONF itself, or in the lmtp scenario a copy that also
# listens for LMTP on $T/lmtp
lmtp_conf() {
	if [ "${SCENARIO:-}" = lmtp ]; then
		{ grep -v '^LMTP_Listen:' "$1"; echo "LMTP_Listen: $T/lmtp"; } > "$1.lmtp"
		echo "$1.lmtp"
	else
		echo "$1"
	fi
}

# tpops_server_conf NAME: the configuration of one of the tpops servers
tpops_server_conf() {
	case $1 in
	tpops) echo "$TCONF" ;;
	tpops-maildir) echo "$T/tpops-maildir.conf" ;;
	tpops-mysql) echo "$MCONF" ;;
	*) return 1 ;;
	esac
}

start_server() { # NAME
	quiet_gate "$1"
	case $1 in
	tpops*) start_tpops "$(lmtp_conf "$(tpops_server_conf "$1")")" ;;
	dovecot-*) start_dovecot "$1" ;;
	esac
}

# The machine is shared: wait (a bounded time) until other work leaves
# the CPUs mostly idle, and record how busy they were.
quiet_gate() { # SERVER
	local busy
	busy=$($PY - "$QUIET_WAIT" <<'PYEOF'
import sys, time
def sample():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle
deadline = time.time() + float(sys.argv[1])
while True:
    t0, i0 = sample()
    time.sleep(0.5)
    t1, i1 = sample()
    busy = 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))
    if busy < 25 or time.time() >= deadline:
        print(round(busy))
        break
PYEOF
)
	record "$SCENARIO" other_load_pct "$1" "$busy"
	record "$SCENARIO" loadavg_1min "$1" "$(cut -d' ' -f1 /proc/loadavg)"
}

stop_server() {
	stop_scraper
	stop_pid "$SERVER_PID"
	SERVER_PID=""
}

# ---- the metrics scenario: counters off and on ----
METRICS_PORT=""
SCRAPER_PID=""

# The scraper Prometheus would be, once a second (15 s is usual).
start_scraper() {
	(while :; do
		curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics"
		sleep 1
	done) &
	SCRAPER_PID=$!
}

stop_scraper() {
	[ -n "$SCRAPER_PID" ] || return 0
	kill "$SCRAPER_PID" 2>/dev/null
	wait "$SCRAPER_PID" 2>/dev/null
	SCRAPER_PID=""
}

fixtures_metrics() {
	fixtures_sessions
	METRICS_PORT=$(free_port)
	# both run at once: POP3S off (TLS_Port 0), or they would share its port
	sed -e "s/^Port: .*/Port: $(free_port)/" -e 's|^ControlSocket: .*|ControlSocket: none|' \
		-e 's/^TLS_Port: .*/TLS_Port: 0/' "$TCONF" > "$T/tpops-metrics-off.conf"
	sed -e "s/^Port: .*/Port: $(free_port)/" -e "s|^ControlSocket: .*|ControlSocket: $T/control-on|" \
		-e 's/^TLS_Port: .*/TLS_Port: 0/' "$TCONF" > "$T/tpops-metrics-on.conf"
	echo "MetricsListen: 127.0.0.1:$METRICS_PORT" >> "$T/tpops-metrics-on.conf"
}

# CPU ticks (user + system) the process has used so far
cpu_ticks() { # PID
	awk '{print $14 + $15}' "/proc/$1/stat"
}

metrics_one() { # SERVER PID PORT CONC
	local srv=$1 pid=$2 port=$3 conc=$4 line t0 t1 ok
	t0=$(cpu_ticks "$pid")
	line=$("$LOADGEN" sessions -p "$port" --user 'p%d' --users 128 \
		-n 1000000 -d "$SECS" -c "$conc" -T $((SECS + 60)))
	t1=$(cpu_ticks "$pid")
	ok=$(field ok "$line")
	note "  $srv plain c=$conc: $line cpu_ticks=$((t1 - t0))"
	record metrics "rate_plain_c$conc" "$srv" "$(field rate "$line")"
	record metrics "cpu_us_per_session_c$conc" "$srv" \
		"$($PY -c "print(round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / max(1, ${ok:-0}), 1))")"
	record metrics "errors_plain_c$conc" "$srv" "$(field err "$line")"
}

# Both daemons run at once and take turns in short measurements, the
# order swapped each round, so that the other load on a shared machine
# falls on both alike; the daemon's own CPU time per session is the
# steadier figure there.
metrics_run() {
	local started=$(date +%s) off_pid off_port on_pid on_port conc
	SCENARIO=metrics
	REP=0
	quiet_gate tpops-metrics
	start_tpops "$T/tpops-metrics-off.conf"
	off_pid=$SERVER_PID off_port=$SERVER_PORT
	start_tpops "$T/tpops-metrics-on.conf"
	on_pid=$SERVER_PID on_port=$SERVER_PORT
	start_scraper
	for p in $off_port $on_port; do
		"$LOADGEN" sessions -p "$p" --user 'p%d' --users 128 -n 256 -c 64 -T 120 >/dev/null 2>&1
	done
	for REP in $(seq 1 "$METRICS_REPEAT"); do
		note "metrics: round $REP of $METRICS_REPEAT"
		for conc in $METRICS_CONCS; do
			if [ $((REP % 2)) = 1 ]; then
				metrics_one tpops-metrics-off "$off_pid" "$off_port" "$conc"
				metrics_one tpops-metrics-on "$on_pid" "$on_port" "$conc"
			else
				metrics_one tpops-metrics-on "$on_pid" "$on_port" "$conc"
				metrics_one tpops-metrics-off "$off_pid" "$off_port" "$conc"
			fi
		done
	done
	stop_scraper
	stop_pid "$on_pid"
	stop_pid "$off_pid"
	note "metrics: done in $(($(date +%s) - started)) s"
	SCENARIO=""
}

passwd_refresh() {
	$PY "$ROOT/bench/fixtures.py" passwd "$PASSWD" "$MAIL" "$RUN_UID" "$RUN_GID" --from-db "$T/tpops.db" ||
		die "writing $PASSWD"
	chmod 644 "$PASSWD"
}

# ---- fixtures ----
MSGS=$W/msgs

gen() { $PY "$ROOT/bench/fixtures.py" "$@" || die "fixtures.py $1 failed"; }

# fixture NAME: true when NAME still has to be made
fixture() {
	if [ -e "$W/.fixture-$1" ]; then
		[ "$FIXTURE_MYSQL" = yes ] && [ ! -e "$W/.fixture-$1-mysql" ] &&
			die "the fixtures '$1' in $W were made without tpops-mysql: use a new BENCH_DIR, or BENCH_SERVERS without tpops-mysql"
		return 1
	fi
	note "making fixtures: $1"
	return 0
}
fixture_done() {
	touch "$W/.fixture-$1"
	[ "$FIXTURE_MYSQL" = yes ] && touch "$W/.fixture-$1-mysql"
	return 0
}

# a user in both servers with the same messages: tpops rows via
# tpops-store, a Dovecot Maildir with the same files
both_user() { # LOGIN plain|sha512 FILE...
	local login=$1 scheme=$2
	shift 2
	tpops_user "$login" pw "$scheme" "$MAIL/$login/Maildir"
	if [ $# -gt 0 ]; then
		tpops_store "$login" "$@"
	fi
	gen maildir "$MAIL/$login/Maildir" "$@"
}

small_messages() {
	[ -e "$MSGS/small/000009" ] || gen messages "$MSGS/small" 10 4000 100
}

fixtures_sessions() {
	fixture sessions || return 0
	small_messages
	local i
	for i in $(seq 0 127); do
		both_user "p$i" plain "$MSGS"/small/*
		both_user "s$i" sha512 "$MSGS"/small/*
	done
	fixture_done sessions
}

fixtures_retr() {
	fixture retr || return 0
	mkdir -p "$MSGS"
	gen message "$MSGS/10m" 10485760 lf 10
	gen messages "$MSGS/100k" 1000 102400 1000
	local i files
	for i in $(seq 0 7); do
		both_user "big$i" plain "$MSGS/10m"
		# 8 x 125: together the 1,000 messages, one maildrop per connection
		files=$(ls "$MSGS"/100k/* | sed -n "$((i * 125 + 1)),$((i * 125 + 125))p")
		both_user "many$i" plain $files
	done
	both_user manyall0 plain "$MSGS"/100k/*
	fixture_done retr
}

fixtures_idle() {
	local n=0 have=0 s
	for s in $IDLE_SIZES; do [ "$s" -gt "$n" ] && n=$s; done
	[ -e "$W/.idle-users" ] && have=$(cat "$W/.idle-users")
	[ "$have" -ge "$n" ] && return 0
	note "making fixtures: idle ($n users)"
	# plaintext passwords, empty maildrops; one transaction, since
	# tpops-useradd is a process and a commit per user
	sqlite3_delete_idle
	$PY "$ROOT/bench/fixtures.py" bulk-users "$T/tpops.db" 'i%d' "$n" pw "$MAIL" || die "bulk users"
	gen empty-maildirs "$MAIL" 'i%d' "$n"
	if [ ! -e "$W/.fixture-x0" ]; then
		# the one more session
		small_messages
		both_user x0 plain "$MSGS"/small/*
		touch "$W/.fixture-x0"
	fi
	echo "$n" > "$W/.idle-users"
}

sqlite3_delete_idle() {
	$PY - "$T/tpops.db" <<'PYEOF'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30)
with con:
    con.execute("DELETE FROM \"user\" WHERE login GLOB 'i[0-9]*'")
con.close()
PYEOF
}

fixtures_maildir() {
	fixture maildir || return 0
	# the pristine 100k maildrop; each first login gets a fresh hard-linked copy
	gen maildir "$W/k-template" --count "$MAILDIR_COUNT" --size 2500 --seed 7
	tpops_user k0 pw plain "$MAIL/k0/Maildir"
	fixture_done maildir
}

fixtures_deliver() {
	fixture deliver || return 0
	gen messages "$MSGS/deliver" "$DELIVER_COUNT" 6000 5000
	tpops_user d0 pw plain "$MAIL/d0/Maildir"
	fixture_done deliver
}

fixtures_lmtp() {
	fixtures_deliver
}

fixtures_rss() {
	fixture rss || return 0
	mkdir -p "$MSGS"
	gen message "$MSGS/100m" 104857600 lf 100
	both_user huge0 plain "$MSGS/100m"
	fixture_done rss
}

# ---- scenarios ----
REP=0

sessions_measure() { # SERVER
	local srv=$1 scheme user conc line
	# warm up: every user once (Dovecot builds its indexes; processes start)
	for user in 'p%d' 's%d'; do
		"$LOADGEN" sessions -p "$SERVER_PORT" --user "$user" --users 128 -n 256 -c 64 -T 120 >/dev/null 2>&1
	done
	for scheme in plain sha512; do
		[ $scheme = plain ] && user='p%d' || user='s%d'
		for conc in $CONCS; do
			line=$("$LOADGEN" sessions -p "$SERVER_PORT" --user "$user" --users 128 \
				-n 1000000 -d "$SECS" -c "$conc" -T $((SECS + 60)))
			note "  $srv $scheme c=$conc: $line"
			record sessions "rate_${scheme}_c$conc" "$srv" "$(field rate "$line")"
			record sessions "p50ms_${scheme}_c$conc" "$srv" "$(field p50_ms "$line")"
			record sessions "p99ms_${scheme}_c$conc" "$srv" "$(field p99_ms "$line")"
			record sessions "errors_${scheme}_c$conc" "$srv" "$(field err "$line")"
		done
	done
}

retr_one() { # SERVER METRIC LOADGEN-ARGS...
	local srv=$1 metric=$2 line
	shift 2
	line=$("$LOADGEN" retr -p "$SERVER_PORT" -T 300 "$@")
	note "  $srv $metric: $line"
	record retr "$metric" "$srv" "$(field mbps "$line")"
}

retr_measure() { # SERVER
	local srv=$1
	# warm up: page cache, indexes
	"$LOADGEN" retr -p "$SERVER_PORT" -k 8 --user 'big%d' -T 300 >/dev/null 2>&1
	"$LOADGEN" retr -p "$SERVER_PORT" -k 8 --user 'many%d' -T 300 >/dev/null 2>&1
	retr_one "$srv" mbps_10m_k1 -k 1 --user 'big%d' --repeat 20
	retr_one "$srv" mbps_10m_k8 -k 8 --user 'big%d' --repeat 3
	retr_one "$srv" mbps_100k_k1 -k 1 --user 'manyall%d'
	retr_one "$srv" mbps_100k_k8 -k 8 --user 'many%d'
}

# the loopback limit for the same bytes: a plain TCP source (loopback),
# and the same with one request per message (loopback-rr); the best of 3
raw_best() { # LOADGEN-RAW-ARGS...
	local best=0 line v
	for _ in 1 2 3; do
		line=$("$LOADGEN" raw -T 60 "$@")
		v=$(field mbps "$line")
		best=$($PY -c "print(max($best, ${v:-0}))")
	done
	echo "$best"
}

retr_loopback() {
	local m10=$MSGS/10m m100k=$MSGS/100k/000000 s10 s100k
	s10=$(stat -c %s "$m10")
	s100k=$(stat -c %s "$m100k")
	quiet_gate loopback
	record retr mbps_10m_k1 loopback "$(raw_best -k 1 --bytes $((20 * s10)) --file "$m10")"
	record retr mbps_10m_k8 loopback "$(raw_best -k 8 --bytes $((3 * s10)) --file "$m10")"
	record retr mbps_100k_k1 loopback "$(raw_best -k 1 --bytes $((1000 * s100k)) --file "$m100k")"
	record retr mbps_100k_k8 loopback "$(raw_best -k 8 --bytes $((125 * s100k)) --file "$m100k")"
	record retr mbps_10m_k1 loopback-rr "$(raw_best -k 1 --msg-bytes "$s10" --msgs 20 --file "$m10")"
	record retr mbps_10m_k8 loopback-rr "$(raw_best -k 8 --msg-bytes "$s10" --msgs 3 --file "$m10")"
	record retr mbps_100k_k1 loopback-rr "$(raw_best -k 1 --msg-bytes "$s100k" --msgs 1000 --file "$m100k")"
	record retr mbps_100k_k8 loopback-rr "$(raw_best -k 8 --msg-bytes "$s100k" --msgs 125 --file "$m100k")"
	note "  loopback: $(grep -P '\tloopback' "$RESULTS" | tail -8 | cut -f2,3,5 | tr '\t\n' ' ;')"
}

idle_measure() { # SERVER: the levels of BENCH_IDLE in one run of loadgen
	local srv=$1 levels line n
	levels=$(tr ' ' ',' <<<"$IDLE_SIZES")
	"$LOADGEN" idle -p "$SERVER_PORT" --user 'i%d' -n "$levels" -c 64 --extra-user x0 \
		--pss-pid "$SERVER_PID" -T 900 --settle 2 > "$W/idle.out"
	while read -r line; do
		note "  $srv idle: $line"
		n=$(field target "$line")
		record idle "pss_mib_$n" "$srv" "$($PY -c "print(round($(field pss_kib "$line") / 1024, 1))")"
		record idle "held_$n" "$srv" "$(field alive "$line")"
		record idle "extra_ok_$n" "$srv" "$([ "$(field extra "$line")" = ok ] && echo 1 || echo 0)"
		record idle "open_s_$n" "$srv" "$(field open_secs "$line")"
	done < "$W/idle.out"
}

# tpops with Mailbox: Maildir, on the same database (users, locks) and on
# Dovecot's Maildirs (user.maildir = MAIL/LOGIN/Maildir)
TPOPS_MAILDIR=unknown
tpops_maildir_available() {
	if [ $TPOPS_MAILDIR = unknown ]; then
		sed 's/^Mailbox: .*/Mailbox: Maildir/' "$TCONF" > "$T/tpops-maildir.conf"
		echo "MaildirRoot: $W" >> "$T/tpops-maildir.conf"
		sed -i "s/^Port: .*/Port: $(free_port)/" "$T/tpops-maildir.conf"
		if "$BIN/tpops" -t -c "$T/tpops-maildir.conf" >/dev/null 2>&1; then
			TPOPS_MAILDIR=yes
		else
			TPOPS_MAILDIR=no
		fi
	fi
	[ $TPOPS_MAILDIR = yes ]
}

maildir_fresh() { # DEST: a fresh (never opened) copy of the 100k maildrop
	rm -rf "$1"
	mkdir -p "$(dirname "$1")"
	cp -al "$W/k-template" "$1"
	as_run_user "$(dirname "$1")"
	# as a maildrop whose last delivery was a while ago (a directory
	# changed within the last second is not trusted by listing caches)
	touch -d '2 minutes ago' "$1/new" "$1/cur" "$1/tmp" "$1"
}

maildir_measure() { # SERVER
	local srv=$1 login line
	for login in first second; do
		line=$("$LOADGEN" probe -p "$SERVER_PORT" --user 'k%d' -T 300)
		note "  $srv $login login: $line"
		record maildir "stat_ms_$login" "$srv" "$(field stat_ms "$line")"
		record maildir "uidl_ms_$login" "$srv" "$(field uidl_ms "$line")"
	done
}

deliver_measure() { # SERVER [SCENARIO METRIC]
	local srv=$1 scenario=${2:-deliver} metric=${3:-deliveries_per_s} start end f n=0
	start=$(date +%s.%N)
	local conf
	if conf=$(tpops_server_conf "$srv"); then
		for f in "$MSGS"/deliver/*; do
			"$BIN/tpops-store" -c "$conf" d0@bench.test < "$f" || die "tpops-store ($srv) failed"
			n=$((n + 1))
		done
	else
		for f in "$MSGS"/deliver/*; do
			"$DOVECOT_LDA" -c "$W/$srv/dovecot.conf" -d d0 -f sender@bench.test < "$f" ||
				die "dovecot-lda failed"
			n=$((n + 1))
		done
	fi
	end=$(date +%s.%N)
	local rate
	rate=$($PY -c "print(round($n / ($end - $start), 1))")
	note "  $srv: $n deliveries, $rate/s"
	record "$scenario" "$metric" "$srv" "$rate"
}

# The same messages as the deliver scenario, to the same user: through the
# pipe (one tpops-store or dovecot-lda process per message, as Postfix's
# pipe(8) runs them) and over LMTP with connections kept open (as
# Postfix's lmtp(8) with its connection cache), to tpops's LMTP_Listen and
# to Dovecot's lmtp service.
lmtp_measure() { # SERVER
	local srv=$1 sock line c
	deliver_measure "$srv" lmtp pipe_per_s
	case $srv in
	tpops|tpops-maildir|tpops-mysql) sock=$T/lmtp ;;
	dovecot-*)
		if [ $DOVECOT_LMTP = no ]; then
			note "  $srv: no LMTP (install dovecot-lmtpd)"
			return 0
		fi
		sock=$W/$srv/run/lmtp ;;
	esac
	for c in $LMTP_CONNECTIONS; do
		line=$("${ON_CLIENT_CPUS[@]}" $PY "$ROOT/bench/lmtp_send.py" "$sock" d0@bench.test "$MSGS/deliver" "$c") ||
			die "LMTP deliveries to $srv failed"
		note "  $srv LMTP, $c connection(s): $line"
		record lmtp "lmtp_per_s_c$c" "$srv" "$(field per_s "$line")"
	done
}

rss_measure() { # SERVER
	local srv=$1 line
	line=$("$LOADGEN" retr -p "$SERVER_PORT" -k 1 --user 'huge%d' --rss-pid "$SERVER_PID" -T 300)
	note "  $srv 100 MiB RETR: $line"
	record rss rss_growth_mib "$srv" "$($PY -c "print(round($(field rss_growth_kib "$line") / 1024, 1))")"
	record rss mbps_100m "$srv" "$(field mbps "$line")"
}

# ---- TLS (issue 17) ----

# tls_args MODE: loadgen's port and TLS option for pop3s or stls
tls_args() {
	case $1 in
	pop3s) echo "-p $SERVER_TLS_PORT --tls" ;;
	stls) echo "-p $SERVER_PORT --stls" ;;
	*) die "unknown TLS mode '$1' (pop3s or stls)" ;;
	esac
}

fixtures_tls-sessions() { fixtures_sessions; }
fixtures_tls-storm() { fixtures_retr; }
fixtures_tls-retr() {
	fixtures_retr
	fixture retr-crlf || return 0
	gen message "$MSGS/10mcrlf" 10485760 crlf 11
	local i
	for i in $(seq 0 7); do
		both_user "bigc$i" plain "$MSGS/10mcrlf"
	done
	fixture_done retr-crlf
}

# tree_cpu_ms PID: CPU time (user and system, ms) of PID and every live
# process under it, with what the children they reaped used (Dovecot's
# master and its services; tpops is one process)
tree_cpu_ms() {
	$PY - "$1" <<'PYEOF'
import os, sys
root = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")
parent, cpu = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            f2 = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    parent[int(d)] = int(f2[1])
    cpu[int(d)] = sum(int(x) for x in f2[11:15])  # utime stime cutime cstime
total = 0
for pid in cpu:
    p = pid
    while p > 1 and p != root:
        p = parent.get(p, 0)
    if p == root:
        total += cpu[pid]
print(total * 1000 // tick)
PYEOF
}

tls-sessions_measure() { # SERVER
	local srv=$1 mode args conc line resume ropt tag srv_before srv_after
	for mode in $TLS_MODES; do
		args=$(tls_args "$mode")
		# warm up: processes, indexes, and the ticket key
		"$LOADGEN" sessions $args --user 'p%d' --users 128 -n 256 -c 64 -T 120 >/dev/null 2>&1
		for conc in $CONCS; do
			for resume in 0 1; do
				[ $resume = 1 ] && [ "$RESUME" != 1 ] && continue
				ropt="" tag=""
				[ $resume = 1 ] && ropt=--resume tag=_resume
				srv_before=$(tree_cpu_ms "$SERVER_PID")
				line=$( { TIMEFORMAT='%U %S'; time "$LOADGEN" sessions $args $ropt --user 'p%d' \
					--users 128 -n 1000000 -d "$SECS" -c "$conc" -T $((SECS + 60)) \
					2>/dev/null; } 2>"$W/loadgen.time")
				srv_after=$(tree_cpu_ms "$SERVER_PID")
				note "  $srv $mode $CERT$tag c=$conc: $line"
				record tls-sessions "rate_${mode}_${CERT}${tag}_c$conc" "$srv" "$(field rate "$line")"
				record tls-sessions "p99ms_${mode}_${CERT}${tag}_c$conc" "$srv" "$(field p99_ms "$line")"
				record tls-sessions "errors_${mode}_${CERT}${tag}_c$conc" "$srv" "$(field err "$line")"
				# CPU per session: the server (all its processes) and the load generator
				local ok
				ok=$(field ok "$line")
				if [ "${ok:-0}" -gt 0 ]; then
					record tls-sessions "srv_cpu_us_${mode}_${CERT}${tag}_c$conc" "$srv" \
						"$((1000 * (srv_after - srv_before) / ok))"
					record tls-sessions "loadgen_cpu_us_${mode}_${CERT}${tag}_c$conc" "$srv" \
						"$($PY -c "import sys; u, s = map(float, sys.argv[1].split()); print(round(1e6 * (u + s) / $ok))" "$(tail -1 "$W/loadgen.time")")"
				fi
				if [ $resume = 1 ]; then
					local resumed handshakes
					resumed=$(field resumed "$line")
					handshakes=$(field tls "$line")
					record tls-sessions "resumed_pct_${mode}_${CERT}_c$conc" "$srv" \
						"$($PY -c "print(round(100 * ${resumed:-0} / max(1, ${handshakes:-0}), 1))")"
				fi
			done
		done
	done
}

tls_retr_one() { # SERVER METRIC LOADGEN-ARGS...
	local srv=$1 metric=$2 line
	shift 2
	line=$("$LOADGEN" retr -T 300 "$@")
	note "  $srv $metric: $line"
	record tls-retr "$metric" "$srv" "$(field mbps "$line")"
}

tls-retr_measure() { # SERVER
	local srv=$1 mode args m
	for mode in $TLS_MODES; do
		args=$(tls_args "$mode")
		m="mbps_${mode}_${CERT}"
		"$LOADGEN" retr $args -k 8 --user 'big%d' -T 300 >/dev/null 2>&1
		"$LOADGEN" retr $args -k 8 --user 'many%d' -T 300 >/dev/null 2>&1
		tls_retr_one "$srv" "${m}_10m_k1" $args -k 1 --user 'big%d' --repeat 20
		tls_retr_one "$srv" "${m}_10m_k8" $args -k 8 --user 'big%d' --repeat 3
		tls_retr_one "$srv" "${m}_10mcrlf_k1" $args -k 1 --user 'bigc%d' --repeat 20
		tls_retr_one "$srv" "${m}_10mcrlf_k8" $args -k 8 --user 'bigc%d' --repeat 3
		tls_retr_one "$srv" "${m}_100k_k1" $args -k 1 --user 'manyall%d'
		tls_retr_one "$srv" "${m}_100k_k8" $args -k 8 --user 'many%d'
	done
}

# RETR of 4 POP3S connections alone, then while 64 more connections do
# nothing but full handshakes (greeting, QUIT) as fast as they can
tls-storm_measure() { # SERVER
	local srv=$1 args="-p $SERVER_TLS_PORT --tls" alone during storm_pid storm
	"$LOADGEN" retr $args -k 4 --user 'big%d' -T 300 >/dev/null 2>&1
	alone=$("$LOADGEN" retr $args -k 4 --user 'big%d' --repeat 3 -T 300)
	"$LOADGEN" sessions $args --handshake-only -c 64 -n 100000000 -d 120 -T 180 \
		--user 'p%d' > "$W/storm.out" 2>/dev/null &
	storm_pid=$!
	sleep 1 # the storm is under way
	during=$("$LOADGEN" retr $args -k 4 --user 'big%d' --repeat 3 -T 300)
	kill -TERM "$storm_pid" 2>/dev/null # loadgen ends its run and reports
	wait "$storm_pid" 2>/dev/null
	storm=$(cat "$W/storm.out")
	note "  $srv $CERT alone: $alone"
	note "  $srv $CERT during the storm: $during"
	note "  $srv $CERT storm: $storm"
	record tls-storm "mbps_k4_alone_$CERT" "$srv" "$(field mbps "$alone")"
	record tls-storm "mbps_k4_storm_$CERT" "$srv" "$(field mbps "$during")"
	record tls-storm "storm_handshakes_per_s_$CERT" "$srv" "$(field rate "$storm")"
}

# run SCENARIO: REPEAT rounds, the servers alternating in each
run_scenario() {
	local srv rounds=$REPEAT started=$(date +%s)
	SCENARIO=$1
	[ "$SCENARIO" = idle ] && rounds=$IDLE_REPEAT
	if [ "$SCENARIO" = metrics ]; then
		metrics_run
		return
	fi
	for REP in $(seq 1 "$rounds"); do
		note "$SCENARIO: round $REP of $rounds"
		case $SCENARIO in
		tls-*)
			for CERT in $CERTS; do
				for srv in $SERVERS; do
					start_server "$srv"
					"${SCENARIO}_measure" "$srv"
					stop_server
				done
			done
			CERT=ecdsa
			continue ;;
		esac
		for srv in $SERVERS; do
			# only MYSQL_SCENARIOS have tpops-mysql's fixtures
			[ "$srv" = tpops-mysql ] && [[ " $MYSQL_SCENARIOS " != *" $SCENARIO "* ]] &&
				continue
			case $SCENARIO:$srv in
			maildir:dovecot-*|maildir:tpops-maildir)
				# the first login: a never-opened copy
				maildir_fresh "$MAIL/k0/Maildir" ;;
			maildir:tpops)
				continue ;; # the SQL store has no Maildir to read
			deliver:tpops-maildir)
				;; # tpops-store with Mailbox: Maildir
			esac
			if [ "$SCENARIO" = deliver ]; then
				# tpops-store and dovecot-lda run without the daemons
				# (dovecot-lda asks Dovecot's auth for the user)
				case $srv in
				dovecot-*) start_server "$srv" ;;
				*) quiet_gate "$srv" ;;
				esac
				deliver_measure "$srv"
				case $srv in dovecot-*) stop_server ;; esac
				continue
			fi
			start_server "$srv"
			"${SCENARIO}_measure" "$srv"
			stop_server
		done
		[ "$SCENARIO" = retr ] && retr_loopback
	done
	note "$SCENARIO: done in $(($(date +%s) - started)) s"
	SCENARIO=""
}

# ---- main ----
START=$(date +%s)
SCENARIO=setup
make_certs
tpops_setup
# a work directory from before the TLS scenarios: the certificate lines
if ! grep -q '^TLS_Port:' "$TCONF"; then
	printf 'TLS_Port: %s\nTLS_Cert: %s\nTLS_Key: %s\n' "$(free_port)" "$W/certs/ecdsa.crt" \
		"$W/certs/ecdsa.key" >> "$TCONF"
fi
if [[ " $SERVERS " == *" tpops-maildir "* ]] && ! tpops_maildir_available; then
	echo "tpops-maildir: skipped: Maildir backend not available (\`tpops -t\` refuses Mailbox: Maildir)"
	SERVERS=$(sed 's/ *tpops-maildir//' <<<" $SERVERS")
	if [[ " $SCENARIOS " == *" maildir "* ]]; then
		echo "maildir: tpops skipped: Maildir backend not available"
	fi
fi
note "work directory $W; servers: $SERVERS; $REPEAT round(s)"

if [[ " $SERVERS " == *" tpops-mysql "* ]] && ! mysql_start; then
	SERVERS=$(sed 's/ *tpops-mysql//' <<<" $SERVERS")
fi

mkdir -p "$MAIL"
for s in $SCENARIOS; do
	FIXTURE_MYSQL=no
	if [[ " $SERVERS " == *" tpops-mysql "* ]] && [[ " $MYSQL_SCENARIOS " == *" $s "* ]]; then
		FIXTURE_MYSQL=yes
	fi
	"fixtures_$s"
done
FIXTURE_MYSQL=no
as_run_user "$MAIL"
passwd_refresh
note "fixtures ready after $(($(date +%s) - START)) s"
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "nproc: $NPROC"
	if [ -n "$SERVER_CPUS" ]; then
		echo "cpus: servers on $SERVER_CPUS, load generator on $CLIENT_CPUS"
	else
		echo "cpus: servers and load generator share all"
	fi
	echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "os: $(. /etc/os-release; echo "$PRETTY_NAME")"
	echo "tpops: $("$BIN/tpops" --version 2>&1), built in $BUILD (checkout $ROOT at $(git -C "$ROOT" describe --always --dirty 2>/dev/null))"
	echo "dovecot: $(dovecot --version)"
	echo "sqlite: $($PY -c 'import ctypes.util, ctypes; l = ctypes.CDLL(ctypes.util.find_library("sqlite3")); l.sqlite3_libversion.restype = ctypes.c_char_p; print(l.sqlite3_libversion().decode())')"
	echo "libevent: $(pkg-config --modversion libevent 2>/dev/null)"
	if [[ " $SERVERS " == *" tpops-mysql "* ]]; then
		echo "mariadb: $(mariadbd --version 2>/dev/null | sed 's/^.*Ver //'), private server for tpops-mysql"
	fi
	echo "ulimit -n: $(ulimit -n)"
	# the floor under a POP3S session: OpenSSL's own server CPU per handshake
	if [[ " $SCENARIOS " == *" tls-"* ]]; then
		for c in $CERTS; do
			echo "openssl server handshake ($c, in memory, bench/handshake_cost): $(
				"$ROOT/build/bench/handshake_cost" "$W/certs/$c.crt" "$W/certs/$c.key" 1000 |
				sed 's/^openssl="[^"]*" //')"
		done
	fi
} > "$W/machine.txt"
sed 's/^/bench: /' "$W/machine.txt" >&2
for mode in dovecot-fast dovecot-stock; do
	dovecot_conf "$mode"
done
for s in $SCENARIOS; do
	run_scenario "$s"
done
{
	echo '```'
	cat "$W/machine.txt"
	echo "servers: $SERVERS; rounds: $REPEAT (idle: $IDLE_REPEAT); sessions: ${SECS} s each"
	echo '```'
	$PY "$ROOT/bench/report.py" "$RESULTS" \
	"tpops Maildir backend: $(case $TPOPS_MAILDIR in yes) echo 'available (tpops-maildir)' ;; no) echo 'not available' ;; *) echo 'not tested' ;; esac)"
} | tee "$W/report.md"
[ -n "${BENCH_OUT:-}" ] && cp "$W/report.md" "$BENCH_OUT"
note "done in $(($(date +%s) - START)) s"
