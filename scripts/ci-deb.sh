#!/bin/bash
# CI check of the Debian package, as root on a Debian 12 machine without
# systemd running: build the .deb, install it, check the tpops user, the
# files and `tpops -t`, run the installed daemon in the foreground on port
# 110 and talk POP3 to it, stop it, purge the package. Exits non-zero on
# the first failure. Leaves the machine as it found it (the tpops user and
# /var/lib/tpops are removed when this script created them).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

step() { printf '\n== ci-deb: %s\n' "$*"; }
fail() { printf 'ci-deb: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs and purges the package)"

work=$(mktemp -d /tmp/tpops-ci-deb.XXXXXX)
daemon_pid=""
user_existed=0
getent passwd tpops >/dev/null && user_existed=1
state_existed=0
[ -e /var/lib/tpops ] && state_existed=1
# the daemon makes /run/tpops for its control socket and, having dropped
# to the tpops user, cannot remove the socket when it stops (systemd's
# RuntimeDirectory does that in production)
run_existed=0
[ -e /run/tpops ] && run_existed=1

cleanup() {
	status=$?
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		sleep 1
		kill -KILL "$daemon_pid" 2>/dev/null || true
	fi
	if dpkg-query -W -f='${Status}' tpops 2>/dev/null | grep -q installed; then
		dpkg --purge tpops >/dev/null 2>&1 || true
	fi
	[ $state_existed = 0 ] && rm -rf /var/lib/tpops
	[ $run_existed = 0 ] && rm -rf /run/tpops
	if [ $user_existed = 0 ] && getent passwd tpops >/dev/null; then
		deluser --system tpops >/dev/null 2>&1 || userdel tpops 2>/dev/null || true
		getent group tpops >/dev/null && { delgroup --system tpops >/dev/null 2>&1 || groupdel tpops 2>/dev/null || true; }
	fi
	rm -rf "$work"
	if [ $status = 0 ]; then echo "ci-deb: 1 passed, 0 failed"; else echo "ci-deb: 0 passed, 1 failed"; fi
	exit $status
}
trap cleanup EXIT

step "build dependencies"
scripts/deps.sh deb

step "man pages"
scripts/check-man.sh

step "build the package (dpkg-buildpackage -us -uc -b)"
scripts/build-deb.sh "$work/out" > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "package build"; }
deb=$(tail -1 "$work/build.log")
echo "built $deb"

if dpkg-query -W -f='${Status}' tpops 2>/dev/null | grep -q installed; then
	step "purging an installed tpops first"
	dpkg --purge tpops
fi

step "install"
if ! dpkg -i "$deb"; then
	apt-get install -f -y -q --no-install-recommends
fi
dpkg-query -W -f='${Status}\n' tpops | grep -q "install ok installed" || fail "tpops is not installed"

step "user, files, permissions"
getent passwd tpops || fail "no tpops user"
getent group tpops || fail "no tpops group"
[ "$(id -u tpops)" -lt 1000 ] || fail "tpops is not a system user"
[ "$(stat -c %U:%G /var/lib/tpops)" = tpops:tpops ] || fail "/var/lib/tpops is not owned by tpops"
[ "$(stat -c %a:%U:%G /etc/tpops/tpops.conf)" = 640:root:tpops ] ||
	fail "/etc/tpops/tpops.conf is $(stat -c %a:%U:%G /etc/tpops/tpops.conf), not 640 root:tpops"
[ "$(stat -c %U /var/lib/tpops/tpops.db)" = tpops ] || fail "the SQLite database was not created by tpops-dbinit as tpops"
for f in /usr/sbin/tpops /usr/sbin/tpops-store /usr/sbin/tpops-useradd /usr/sbin/tpops-userdel \
	/usr/sbin/tpops-passwd /usr/sbin/tpops-users /usr/sbin/tpops-dbinit /usr/sbin/tpops-admin \
	/usr/share/man/man8/tpops-admin.8.gz \
	/lib/systemd/system/tpops.service /lib/systemd/system/tpops.socket \
	/usr/share/man/man8/tpops.8.gz /usr/share/man/man5/tpops.conf.5.gz \
	/usr/share/man/man8/tpops-store.8.gz /usr/share/tpops/tpops.conf.example \
	/usr/share/tpops/sql/sqlite.sql; do
	[ -e "$f" ] || fail "$f is missing"
done
grep -q '^ExecStart=/usr/sbin/tpops -f -c /etc/tpops/tpops.conf$' /lib/systemd/system/tpops.service ||
	fail "tpops.service does not run the installed /usr/sbin/tpops"
grep -q '^Type=notify$' /lib/systemd/system/tpops.service || fail "tpops.service is not Type=notify"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' /lib/systemd/system/tpops.service ||
	fail "tpops.service has no ExecReload sending SIGHUP"
/usr/sbin/tpops --version
/usr/sbin/tpops-store --version

step "tpops -t with the installed configuration"
/usr/sbin/tpops -t || fail "tpops -t"

step "start /usr/sbin/tpops -f as root"
if (exec 3<>/dev/tcp/127.0.0.1/110) 2>/dev/null; then
	fail "something already listens on port 110"
fi
/usr/sbin/tpops -f > "$work/tpops.log" 2>&1 &
daemon_pid=$!
up=0
for _ in $(seq 50); do
	if (exec 3<>/dev/tcp/127.0.0.1/110) 2>/dev/null; then up=1; break; fi
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.2
done
[ $up = 1 ] || { cat "$work/tpops.log"; fail "tpops is not listening on port 110"; }
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$daemon_pid/status")
[ "$uid" = "$(id -u tpops)" ] || fail "tpops serves as uid $uid, not as the tpops user"

step "POP3 greeting on port 110"
exec 3<>/dev/tcp/127.0.0.1/110
IFS= read -r -t 10 greeting <&3 || fail "no greeting"
echo "S: $greeting"
[[ $greeting == "+OK"* ]] || fail "greeting is not +OK"
printf 'QUIT\r\n' >&3
IFS= read -r -t 10 bye <&3 || fail "no answer to QUIT"
echo "S: $bye"
[[ $bye == "+OK"* ]] || fail "QUIT is not answered +OK"
exec 3<&-

step "a user, a delivery and a retrieval with the installed tools"
echo 'ci-secret' | /usr/sbin/tpops-useradd ci-user - ci-user@example.com
printf 'Subject: ci-deb\n\nHello from ci-deb.\n' | /usr/sbin/tpops-store ci-user@example.com
set +e
printf 'x\n' | /usr/sbin/tpops-store nobody-here@example.com
rc=$?
set -e
[ $rc = 67 ] || fail "tpops-store for an unknown address exited $rc, not 67"
/usr/sbin/tpops-users | grep -q '^[0-9]*	ci-user	ci-user@example.com' || fail "tpops-users does not list ci-user"
exec 3<>/dev/tcp/127.0.0.1/110
pop() { # pop COMMAND -> the first line of the answer, must be +OK
	printf '%s\r\n' "$1" >&3
	IFS= read -r -t 10 line <&3 || fail "no answer to $1"
	line=${line%$'\r'}
	[[ $line == "+OK"* ]] || fail "$1: $line"
}
IFS= read -r -t 10 greeting <&3
pop "USER ci-user"
pop "PASS ci-secret"
pop "STAT"
[[ $line == "+OK 1 "* ]] || fail "STAT: $line (one message expected)"
pop "RETR 1"
body=""
while IFS= read -r -t 10 l <&3; do
	l=${l%$'\r'}
	[ "$l" = "." ] && break
	body="$body$l"$'\n'
done
grep -q 'Hello from ci-deb.' <<<"$body" || fail "RETR did not return the stored message"
pop "DELE 1"
pop "QUIT"
exec 3<&-
/usr/sbin/tpops-userdel ci-user

step "tpops-admin on the default control socket"
[ "$(stat -c %a:%U:%G /run/tpops/control)" = 660:root:tpops ] ||
	fail "/run/tpops/control is $(stat -c %a:%U:%G /run/tpops/control), not 660 root:tpops"
/usr/sbin/tpops-admin who || fail "tpops-admin who"
/usr/sbin/tpops-admin stats | grep -q 'Connections accepted' || fail "tpops-admin stats"
/usr/sbin/tpops-admin reload | grep -q 'reload applied' || fail "tpops-admin reload"

step "reload with SIGHUP"
reloads() { grep -c 'configuration reloaded from /etc/tpops/tpops.conf' "$work/tpops.log" || true; }
before=$(reloads)
kill -HUP "$daemon_pid"
for _ in $(seq 50); do
	[ "$(reloads)" -gt "$before" ] && break
	sleep 0.2
done
[ "$(reloads)" -gt "$before" ] || { cat "$work/tpops.log"; fail "no reload after SIGHUP"; }
kill -0 "$daemon_pid" 2>/dev/null || fail "tpops died on SIGHUP"

step "stop with SIGTERM"
kill -TERM "$daemon_pid"
for _ in $(seq 50); do
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.2
done
if kill -0 "$daemon_pid" 2>/dev/null; then fail "tpops did not stop within 10 s of SIGTERM"; fi
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=""
[ $rc = 0 ] || { cat "$work/tpops.log"; fail "tpops exited $rc after SIGTERM"; }
echo "--- tpops log"
cat "$work/tpops.log"

step "purge"
dpkg --purge tpops
for f in /usr/sbin/tpops /etc/tpops/tpops.conf /lib/systemd/system/tpops.service \
	/usr/share/man/man8/tpops.8.gz /etc/systemd/system/multi-user.target.wants/tpops.service; do
	[ ! -e "$f" ] || fail "$f is still there after purge"
done
echo "ci-deb: the package builds, installs, serves POP3 and purges"
