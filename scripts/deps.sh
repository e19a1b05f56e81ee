#!/bin/sh
# Installs the Debian packages tpops needs that are missing (as root), or
# prints the one apt-get line to run (as anyone else).
#   deps.sh build   what `make` and `make run` need
#   deps.sh test    what `make check` needs as well (real peers for the tests)
#   deps.sh deb     what `make deb`, scripts/ci-deb.sh and `make check-man` need
#   deps.sh ktls    what `make check-ktls` needs (a VM whose kernel has kTLS)
set -e
BUILD_PKGS="build-essential pkg-config libevent-dev libssl-dev libsqlite3-dev libcrypt-dev libargon2-dev libmariadb-dev"
DEB_PKGS="debhelper dpkg-dev adduser groff-base man-db"
KTLS_PKGS="qemu-system-x86 busybox-static cpio python3 openssl"
TEST_PKGS="libcmocka-dev clang libclang-rt-14-dev python3 python3-pytest curl fetchmail openssl strace sqlite3 mariadb-server galera-4 mariadb-backup socat iproute2 python3-pymysql postfix dovecot-pop3d dovecot-lmtpd mpop systemd prometheus fail2ban s-nail neomutt"

case "${1:-build}" in
build) want="$BUILD_PKGS" ;;
test) want="$BUILD_PKGS $TEST_PKGS" ;;
deb) want="$BUILD_PKGS $DEB_PKGS" ;;
ktls) want="$BUILD_PKGS $KTLS_PKGS" ;;
*) echo "usage: $0 build|test|deb|ktls" >&2; exit 64 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "tpops needs these Debian packages; install them with:" >&2
	echo "  sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks questions at install time; answer them for a machine whose
# own mail setup this must not touch.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
# policy-rc.d keeps package scripts from starting the system's own
# MariaDB/Postfix/Dovecot: the tests start private instances.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ $had_policy = 0 ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
fi
apt-get install -y -q --no-install-recommends $missing
[ $had_policy = 0 ] && rm -f /usr/sbin/policy-rc.d
exit 0
