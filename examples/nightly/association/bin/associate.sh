#!/bin/sh
# associate.sh VISIT CCD NDIA NPRED-FILE RA DEC
# Prints the association of one CCD of a visit as one JSON object:
#   {"nassoc": M, "associated": {"visit": ..., "ccd": ..., "diaSources": NDIA,
#    "predicted": P, "matched": M, "field": {"ra": RA, "dec": DEC}}}
# NPRED-FILE holds the npred property of mops's predictions event for the
# visit (a JSON list, one count per mops slice); P is their sum. RA and DEC
# are that event's field. Stands in for matching sources to predicted
# positions: M is the smaller of NDIA and P.
set -eu
visit=$1
ccd=$2
ndia=$3
file=$4
ra=$5
dec=$6
if [ ! -r "$file" ]; then
	echo "associate.sh: cannot read $file" >&2
	exit 1
fi
counts=$(tr -d '[] \t\n\r' <"$file")
case "$counts" in
'' | *[!0-9,]* | ,* | *, | *,,*)
	echo "associate.sh: $file does not hold a list of counts: \"$counts\"" >&2
	exit 1
	;;
esac
npred=$(printf '%s\n' "$counts" | tr ',' '\n' | awk '{ s += $1 } END { print s + 0 }')
matched=$ndia
if [ "$npred" -lt "$matched" ]; then
	matched=$npred
fi
printf '{"nassoc": %d, "associated": {"visit": "%s", "ccd": %d, "diaSources": %d, "predicted": %d, "matched": %d, "field": {"ra": %s, "dec": %s}}}\n' \
	"$matched" "$visit" "$ccd" "$ndia" "$npred" "$matched" "$ra" "$dec"
