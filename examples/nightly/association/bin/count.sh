#!/bin/sh
# count.sh CATALOGUE
# Prints {"ndia": N}: the number of sources in a catalogue detect wrote
# (a JSON list of objects, each with an "id").
set -eu
cat=$1
if [ ! -r "$cat" ]; then
	echo "count.sh: cannot read $cat" >&2
	exit 1
fi
n=$(grep -o '"id"' "$cat" | wc -l)
sleep 0.5 # the source cleaning this stands in for
printf '{"ndia": %d}\n' "$n"
