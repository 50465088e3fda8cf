#!/bin/sh
# predict.sh VISIT RA DEC
# Prints the moving objects predicted in the field of a visit as one JSON
# object on stdout:
#   {"npred": N, "predicted": [{"id": "mop-VISIT-I", "ra": ..., "dec": ...}, ...]}
# Stands in for orbit propagation: the objects are made up from the visit
# number and the pointing.
set -eu
visit=$1
ra=$2
dec=$3
case "$visit" in
'' | *[!0-9]*)
	echo "predict.sh: the visit must be a number, got \"$visit\"" >&2
	exit 1
	;;
esac
awk -v visit="$visit" -v ra="$ra" -v dec="$dec" 'BEGIN {
	n = visit % 4 + 1
	printf "{\"npred\": %d, \"predicted\": [", n
	for (i = 1; i <= n; i++)
		printf "%s{\"id\": \"mop-%s-%d\", \"ra\": %.4f, \"dec\": %.4f}", (i > 1 ? ", " : ""), visit, i, ra + 0.002 * i, dec - 0.002 * i
	print "]}"
}'
