#!/bin/sh
# measure.sh FILE EXPTIME
# Prints statistics of the pixel values in FILE as one JSON object on
# stdout, the way an exec stage expects. Stands in for a scientist's
# Python or C++ program: any language works, as long as it reads its
# arguments and prints JSON.
set -eu
file=$1
exptime=$2
if [ ! -r "$file" ]; then
	echo "measure.sh: cannot read $file" >&2
	exit 1
fi
awk -v exptime="$exptime" '
	{ for (i = 1; i <= NF; i++) { n++; s += $i; if (n == 1 || $i + 0 > max) max = $i + 0 } }
	END {
		if (n == 0) { print "measure.sh: no pixels" > "/dev/stderr"; exit 1 }
		mean = s / n
		printf "{\"mean\": %.4f, \"stats\": {\"npix\": %d, \"mean\": %.4f, \"max\": %d, \"rate\": %.4f}}\n", mean, n, mean, max, mean / exptime
	}' "$file"
