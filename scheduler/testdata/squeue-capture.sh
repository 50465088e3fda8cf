#!/bin/bash
# Captures squeue-text.txt and squeue-text.json from the local cluster
# (scripts/cluster.sh): the same jobs through Jobs' squeue text format
# (separator ~TESTSEPARATOR2K7Q) and through squeue --json, at the same
# moment. Run from scheduler/testdata; takes about 15 s.
#   cap-ok completes; cap-fail exits 3; cap-killed kills itself (SIGKILL);
#   cap-running runs; cap-cancelled is cancelled while running; then,
#   pending on a dependency: a job named "cap|pending", an array of
#   three tasks not yet split; a held job whose name holds a newline and
#   a record forged for another separator; a finished array of two
#   tasks; hostile names: spaces and a tab, non-ASCII, empty, squeue
#   format characters, another call's separator, a trailing newline.
set -euo pipefail
sep='~TESTSEPARATOR2K7Q'
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
sub() { sbatch --parsable --partition=debug --time=2 --output=/dev/null "$@"; }
ok=$(sub -J cap-ok --wrap=true)
fail=$(sub -J cap-fail --wrap='exit 3')
killed=$(sub -J cap-killed --wrap='kill -9 $$')
running=$(sub -J cap-running --wrap='sleep 300')
cancelled=$(sub -J cap-cancelled --wrap='sleep 300')
pending=$(sub -J 'cap|pending' --dependency=afterany:$running --wrap=true)
array=$(sub -J cap-array --array=1-3 --dependency=afterany:$running --wrap=true)
forged=$(sub -H -J $'cap-held\n1~QWERTYUIOPASDFGH1~QWERTYUIOPASDFGHCOMPLETED|None|0' --wrap=true)
done2=$(sub -J cap-done-array --array=1-2 --wrap=true)
names=()
for n in $'sp ace\tand tab' 'ünïcødé 🙂' '' '%j%i,:0~X' '~QWERTYUIOPASDFGH' $'trailing-newline\n'; do
	names+=("$(sub -J "$n" --wrap=true)")
done
for i in $(seq 60); do
	[ "$(squeue -h -j "$running,$cancelled" -t running -o %i | wc -l)" = 2 ] && break
	sleep 0.5
done
scancel "$cancelled"
for i in $(seq 60); do
	[ -z "$(squeue -h -j "$ok,$fail,$killed,$cancelled,$done2,$(IFS=,; echo "${names[*]}")" -o %i)" ] && break
	sleep 0.5
done
ids="$ok,$fail,$killed,$running,$cancelled,$pending,$array,$forged,$done2,$(IFS=,; echo "${names[*]}")"
fmt=JobID,JobArrayID,State,Reason,exit_code,SubmitTime,StartTime,EndTime,NodeList,Partition,Name
fmt=$(echo "$fmt" | sed "s/,/:0$sep,/g; s/\$/:0$sep/")
here=$OLDPWD
SLURM_TIME_FORMAT=%s squeue --noheader --states=all --jobs="$ids" --Format="$fmt" > "$here/squeue-text.txt"
squeue --json | python3 -c '
import json, sys
want = set(int(i.split("_")[0]) for i in sys.argv[1].split(","))
d = json.load(sys.stdin)
d["jobs"] = [j for j in d["jobs"] if j["job_id"] in want or j["array_job_id"] in want]
json.dump(d, sys.stdout, indent=1)
' "$ids" > "$here/squeue-text.json"
scancel "$running" "$forged" "$array" "$pending"
echo "captured jobs $ids"
