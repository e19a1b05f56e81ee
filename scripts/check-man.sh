#!/bin/sh
# Checks every manual page in man/ (or the files given) with groff's
# warnings all on and with man-db's `man --warnings`; any warning fails.
# Also checks that every program has a page. Needs groff-base and man-db.
set -u
cd "$(dirname "$0")/.."
export LC_ALL=C.UTF-8 MANWIDTH=80
status=0
[ $# -gt 0 ] || set -- man/*
for page in "$@"; do
	case "$page" in
	*.[1-9]) ;;
	*) continue ;;
	esac
	# a page that is only a .so link is checked through its target
	if [ "$(head -c 4 "$page")" = ".so " ]; then
		target=man/$(basename "$(sed -n '1s/^\.so //p' "$page")")
		[ -f "$target" ] || { echo "$page: .so target $target is missing"; status=1; }
		continue
	fi
	macros=-man
	grep -q '^\.Dd' "$page" && macros=-mdoc
	out=$(groff -ww $macros -z "$page" 2>&1)
	out2=$(man --warnings -l "$page" 2>&1 >/dev/null)
	if [ -n "$out$out2" ]; then
		echo "$page:"
		[ -n "$out" ] && echo "$out"
		[ -n "$out2" ] && echo "$out2"
		status=1
	fi
done
for prog in tpops $(ls tools/tpops-*.c 2>/dev/null | sed 's|tools/||; s|\.c$||'); do
	[ -f "man/$prog.8" ] || { echo "man/$prog.8: missing (every program needs a page)"; status=1; }
done
[ -f man/tpops.conf.5 ] || { echo "man/tpops.conf.5: missing"; status=1; }
# every key of the example configuration is documented
for key in $(sed -n 's/^#\([A-Za-z_]*\):.*/\1/p' docs/tpops.conf.example | sort -u); do
	grep -q "^\.B[IR]* \"$key: " man/tpops.conf.5 ||
		{ echo "man/tpops.conf.5: key $key of docs/tpops.conf.example is not documented"; status=1; }
done
[ $status = 0 ] && echo "man pages: $(ls man | wc -l) checked, no warnings"
exit $status
