#!/bin/sh
# Runs each libFuzzer target for SECONDS on a copy of its seed corpus
# (fuzz/corpus/NAME), so that the seeds in the repository stay small.
# Fails on the first crash; the crashing input is left in build-fuzz/.
set -e
seconds=$1
shift
for bin in "$@"; do
	name=$(basename "$bin")
	corpus=fuzz/corpus/${name#fuzz_}
	work=build-fuzz/corpus-$name
	mkdir -p "$work"
	[ -d "$corpus" ] && cp -n "$corpus"/* "$work"/ 2>/dev/null || true
	dict=""
	[ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
	echo "== $name: ${seconds}s"
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix=build-fuzz/"$name"- -print_final_stats=1 $dict "$work" 2>&1 |
		grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|INFO: Running with)' || true
	# libFuzzer exits non-zero on a finding; the pipe hides that, so
	# look for an artifact instead.
	if ls build-fuzz/"$name"-* >/dev/null 2>&1; then
		echo "$name: crash found, see build-fuzz/$name-*" >&2
		exit 1
	fi
done
