#!/bin/bash
# Runs as the VM's first process (tests/ktls/run.sh). The root is
# read-only; what is written goes to /run, a tmpfs that the initramfs
# mounted with the cipher modules in /run/ktls-mod. First tpops on Maildir
# with the tls module but no cipher module (the kernel cannot take the
# sessions: OpenSSL must encrypt them, tpops must say so, and nothing goes
# by SSL_sendfile), then, with the ciphers loaded, tpops on SQLite and on
# Maildir with kernel TLS, and on Maildir once more with sendfile(2)
# refused (tests/ktls/refuse_sendfile.c), checked by tests/ktls/check.py.
# The last line of output is "ktls-result: passed" or "ktls-result:
# failed".
build=$1
here=$(cd "$(dirname "$0")" && pwd)
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/run TMPDIR=/run
ip link set lo up
finish() {
	echo "ktls-result: $1"
	/run/ktls-mod/busybox poweroff -f
}
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp || finish "failed (no tls upper layer protocol in the VM)"

T=/run/ktls
mkdir -p $T && chmod 755 $T
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ktls.test \
	-keyout $T/key.pem -out $T/cert.pem 2>/dev/null || finish "failed (openssl req)"
chmod 644 $T/key.pem
python3 "$here/check.py" --messages $T || finish "failed (messages)"

# setup STORE (sql or maildir) NAME: a configuration, a database, user u1
# and the six messages in $T/NAME
setup() {
	local store=$1 d=$T/$2
	mkdir -p $d && chown nobody:nogroup $d
	cat > $d/tpops.conf <<CONF
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
MetricsListen: 127.0.0.1:9100
CommandTimeout: 5
TLS_Port: 995
TLS_Cert: $T/cert.pem
TLS_Key: $T/key.pem
CONF
	if [ $store = maildir ]; then
		printf 'Mailbox: Maildir\nMaildirRoot: %s\n' $d >> $d/tpops.conf
		local md=$d/u1/Maildir
		mkdir -p $md/new $md/cur $md/tmp
		for i in 1 2 3 4 5 6; do cp $T/m$i $md/new/100000000$i.M1P1.ktls.test; done
		chown -R nobody:nogroup $d/u1
	else
		echo "Mailbox: MySQL" >> $d/tpops.conf
	fi
	"$build/tpops-dbinit" -c $d/tpops.conf >/dev/null && chown nobody:nogroup $d/tpops.db* || return 1
	if [ $store = maildir ]; then
		"$build/tpops-useradd" -c $d/tpops.conf u1 pw u1@ktls.test $md >/dev/null
	else
		"$build/tpops-useradd" -c $d/tpops.conf u1 pw u1@ktls.test >/dev/null &&
			"$build/tpops-store" -c $d/tpops.conf u1@ktls.test $T/m1 $T/m2 $T/m3 $T/m4 $T/m5 $T/m6
	fi
}

# run NAME CHECK-OPTION...: tpops on $T/NAME, check.py, a clean SIGTERM
run() {
	local name=$1 d=$T/$1
	shift
	# as tests/integration/conftest.py runs the daemon under ASan (it does
	# not free what lives until exit); PRELOAD: a library to preload
	LD_PRELOAD=${PRELOAD:-} ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0 \
		"$build/tpops" -c $d/tpops.conf 2> $d/log &
	local pid=$! status maildir=
	[ -d $d/u1/Maildir ] && maildir="--maildir $d/u1/Maildir"
	python3 "$here/check.py" --store $name --log $d/log --admin "$build/tpops-admin" \
		--control $d/control --pid $pid --metrics 9100 $maildir "$@" 110 995 u1 pw || ok=0
	kill $pid 2>/dev/null # check.py may have sent SIGTERM itself
	wait $pid
	status=$?
	if [ $status = 0 ]; then
		echo "ktls-check: ok: $name: tpops stopped cleanly on SIGTERM"
	else
		echo "ktls-check: FAILED: $name: tpops exited with $status on SIGTERM; its log ends:"
		tail -20 $d/log | sed 's/^/ktls-log:   /'
		ok=0
	fi
}

ok=1
setup maildir no-ciphers || finish "failed (setting up no-ciphers)"
run no-ciphers --without-ciphers
for m in $(cat /run/ktls-mod/order); do
	/run/ktls-mod/busybox insmod /run/ktls-mod/$m || finish "failed (insmod $m)"
done
for store in sql maildir; do
	setup $store $store || finish "failed (setting up $store)"
	run $store
done
# the kernel refuses sendfile (as for a file system it cannot splice
# from): RETRs must copy instead, with one warning
setup maildir refused || finish "failed (setting up refused)"
PRELOAD=$here/../../build/ktls/refuse_sendfile.so run refused --sendfile-refused
[ $ok = 1 ] && finish passed
finish failed
