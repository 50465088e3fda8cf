#!/bin/sh
# associate.sh VISIT CCD NDIA NPRED-FILE RA DEC KNOWN WORKER
# Prints the association of one CCD of a visit as one JSON object:
#   {"nassoc": M, "associated": {"visit": ..., "ccd": ..., "diaSources": NDIA,
#    "predicted": P, "matched": M, "known": KNOWN, "worker": WORKER, "field": {"ra": RA, "dec": DEC}}}
# NPRED-FILE holds the npred property of mops's predictions event for the
# visit (a JSON object, each mops data ID's count: {"rank=1": 12}); P is
# their sum. RA and DEC
# are that event's field. Stands in for matching sources to predicted
# positions: M is the smaller of NDIA and P; KNOWN is what the known
# stage's worker (process WORKER) found in its catalogue for the field.
set -eu
visit=$1
ccd=$2
ndia=$3
file=$4
ra=$5
dec=$6
known=$7
worker=$8
if [ ! -r "$file" ]; then
	echo "associate.sh: cannot read $file" >&2
	exit 1
fi
counts=$(tr -d ' \t\n\r' <"$file")
# {"rank=1":12,...}: every value a count.
values=$(printf '%s' "$counts" | grep -o '":[^,}]*' | tr -d '":' || true)
case "$counts" in
'{'*'}') ;;
*) values=x ;;
esac
case "$(printf '%s' "$values" | tr -d '\n')" in
*[!0-9]*)
	echo "associate.sh: $file does not hold counts by data ID: \"$counts\"" >&2
	exit 1
	;;
esac
npred=$(printf '%s\n' "$values" | awk '{ s += $1 } END { print s + 0 }')
matched=$ndia
if [ "$npred" -lt "$matched" ]; then
	matched=$npred
fi
sleep 0.7 # the matching this stands in for
printf '{"nassoc": %d, "associated": {"visit": "%s", "ccd": %d, "diaSources": %d, "predicted": %d, "matched": %d, "known": %d, "worker": %d, "field": {"ra": %s, "dec": %s}}}\n' \
	"$matched" "$visit" "$ccd" "$ndia" "$npred" "$matched" "$known" "$worker" "$ra" "$dec"
