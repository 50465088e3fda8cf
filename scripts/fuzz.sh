#!/usr/bin/env bash
# scripts/fuzz.sh: run each fuzz target of dpsbatch for a short while.
#
# The targets feed arbitrary bytes to the readers of hostile input (the
# policy, the site file, the CSV and JSON-lines visit files, a trigger
# event's properties) and check that nothing panics and that every error
# names its file, line or key. Their seed corpus (testdata/fuzz/<target>/
# in each package) also runs with every plain `go test`.
#
# `go test -fuzz` takes one target per call. Each runs for a number of
# executions, not a duration: a -fuzztime duration can fail a healthy
# target with "context deadline exceeded" on a loaded machine (a race in
# Go's fuzzing coordinator before Go 1.27). A failing input is written to
# testdata/fuzz/<target>/ by go test: commit it as a seed once fixed.
# Minimizing a new input is capped too (by default it may take a minute).
#
#   bash scripts/fuzz.sh                 # every target, FUZZ_EXECS each
#   FUZZ_EXECS=200000 bash scripts/fuzz.sh FuzzSite
set -euo pipefail
cd "$(dirname "$0")/.."

execs=${FUZZ_EXECS:-10000}
targets=(
	./harness:FuzzPolicy
	./site:FuzzSite
	./harness:FuzzVisitsCSV
	./harness:FuzzVisitsJSONL
	./harness:FuzzEventProperties
)

status=0
for t in "${targets[@]}"; do
	pkg=${t%%:*} name=${t#*:}
	if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
		continue
	fi
	echo "fuzz: $name ($pkg, $execs executions)" >&2
	log=$(mktemp)
	if go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "${execs}x" -fuzzminimizetime 100x -parallel 1 -timeout 10m >"$log" 2>&1; then
		rm -f "$log"
		continue
	fi
	status=1
	tail -30 "$log" >&2
	rm -f "$log"
	echo "fuzz: $name FAILED" >&2
done
exit "$status"
