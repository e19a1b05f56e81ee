#!/bin/bash
# Runs as the VM's first process (tests/ktls/run.sh): tpops on SQLite and
# on Maildir, with kernel TLS, checked by tests/ktls/check.py. The root is
# read-only; what is written goes to /run (a tmpfs). The last line of
# output is "ktls-result: passed" or "ktls-result: failed".
build=$1
here=$(cd "$(dirname "$0")" && pwd)
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/run TMPDIR=/run
ip link set lo up
finish() {
	echo "ktls-result: $1"
	/bin/busybox poweroff -f
}
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp || finish "failed (no tls upper layer protocol in the VM)"

T=/run/ktls
mkdir -p $T && chmod 755 $T
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ktls.test \
	-keyout $T/key.pem -out $T/cert.pem 2>/dev/null || finish "failed (openssl req)"
chmod 644 $T/key.pem
python3 "$here/check.py" --messages $T || finish "failed (messages)"

ok=1
for store in sql maildir; do
	d=$T/$store
	mkdir -p $d && chown nobody:nogroup $d
	conf=$d/tpops.conf
	cat > $conf <<CONF
Port: 110
Listen: 127.0.0.1
Hostname: ktls.test
Database: sqlite
SQLite_Path: $d/tpops.db
Log: stderr
LogLevel: info
Foreground: yes
User: nobody
Group: nogroup
AuthFailureDelay: 0
ControlSocket: $d/control
TLS_Port: 995
TLS_Cert: $T/cert.pem
TLS_Key: $T/key.pem
CONF
	if [ $store = maildir ]; then
		printf 'Mailbox: Maildir\nMaildirRoot: %s\n' $d >> $conf
		md=$d/u1/Maildir
		mkdir -p $md/new $md/cur $md/tmp
		for i in 1 2 3 4; do cp $T/m$i $md/new/100000000$i.M1P1.ktls.test; done
		chown -R nobody:nogroup $d/u1
	else
		echo "Mailbox: MySQL" >> $conf
	fi
	"$build/tpops-dbinit" -c $conf >/dev/null && chown nobody:nogroup $d/tpops.db* ||
		finish "failed ($store: tpops-dbinit)"
	if [ $store = maildir ]; then
		"$build/tpops-useradd" -c $conf u1 pw u1@ktls.test $md >/dev/null
	else
		"$build/tpops-useradd" -c $conf u1 pw u1@ktls.test >/dev/null &&
			"$build/tpops-store" -c $conf u1@ktls.test $T/m1 $T/m2 $T/m3 $T/m4
	fi || finish "failed ($store: user or messages)"
	# as tests/integration/conftest.py runs the daemon under ASan (it does
	# not free what lives until exit)
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$build/tpops" -c $conf 2> $d/log &
	pid=$!
	python3 "$here/check.py" --store $store --log $d/log --admin "$build/tpops-admin" \
		--control $d/control 110 995 u1 pw || ok=0
	kill $pid
	wait $pid
	status=$?
	if [ $status = 0 ]; then
		echo "ktls-check: ok: $store: tpops stopped cleanly on SIGTERM"
	else
		echo "ktls-check: FAILED: $store: tpops exited with $status on SIGTERM; its log ends:"
		tail -20 $d/log | sed 's/^/ktls-log:   /'
		ok=0
	fi
done
[ $ok = 1 ] && finish passed
finish failed
