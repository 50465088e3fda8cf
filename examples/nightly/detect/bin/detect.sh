#!/bin/sh
# detect.sh VISIT CCD RA DEC
# Prints the DIA sources of one CCD of a visit as one JSON object on
# stdout, the way an exec stage expects:
#   {"nsrc": N, "sources": [{"id": "VISIT-CCD-I", "ra": ..., "dec": ...}, ...]}
# Stands in for difference imaging: the sources are made up from the visit
# and CCD numbers and the pointing, so every run finds the same ones.
set -eu
visit=$1
ccd=$2
ra=$3
dec=$4
case "$visit:$ccd" in
*[!0-9:]* | :* | *:)
	echo "detect.sh: visit and CCD must be numbers, got \"$visit\" and \"$ccd\"" >&2
	exit 1
	;;
esac
sleep 0.5 # the image processing this stands in for
awk -v visit="$visit" -v ccd="$ccd" -v ra="$ra" -v dec="$dec" 'BEGIN {
	n = (visit + 2 * ccd) % 4 + 2
	printf "{\"nsrc\": %d, \"sources\": [", n
	for (i = 1; i <= n; i++)
		printf "%s{\"id\": \"%s-%s-%d\", \"ra\": %.4f, \"dec\": %.4f}", (i > 1 ? ", " : ""), visit, ccd, i, ra + 0.01 * ccd + 0.001 * i, dec + 0.001 * i
	print "]}"
}'
