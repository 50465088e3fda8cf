#!/bin/bash
# Records slurmrestd v0.0.38 answers (Slurm 22.05) from the local cluster
# for the client's unit tests: run as root from scheduler/slurmrest/testdata
# after `scripts/cluster.sh start-rest-jwt`; takes about 20 s. Each answer
# is NAME.STATUS.json (STATUS: the HTTP status). Lists are cut down to the
# jobs submitted here. Tokens are minted for a minute and never written.
#   rec-ok completes; rec-fail exits 3; rec-run runs (recorded running,
#   then cancelled); the openapi listing keeps only its paths. The tests
#   name the job IDs of this recording (920, 921, 922): a new recording
#   has new IDs, to be put in client_test.go. dbjob-usage.200.json and
#   dbjob-running.200.json (GET /slurmdb/v0.0.38/job/ID, jobs 2563 and
#   2567) were recorded by hand: a batch script whose step `srun -n2`
#   held about 130 MiB per task, and a job still running `srun sleep 20`;
#   scheduler/testdata/sacct-usage.txt has sacct's lines of the same jobs.
set -euo pipefail
url=http://127.0.0.1:6820
user=slurmrest
headers=$(mktemp)
dir=$(mktemp -d)
chmod 777 "$dir"
trap 'rm -rf "$headers" "$dir"' EXIT
token=$(scontrol token username=$user lifespan=120)
printf 'X-SLURM-USER-NAME: %s\nX-SLURM-USER-TOKEN: %s\n' "$user" "${token#SLURM_JWT=}" >"$headers"

# get NAME METHOD PATH [BODY]: record one answer.
get() {
	local name=$1 method=$2 path=$3 body=${4:-} out status
	out=$(mktemp)
	status=$(curl -s -o "$out" -w '%{http_code}' -H @"$headers" -H 'Content-Type: application/json' \
		-X "$method" ${body:+--data "$body"} "$url$path")
	mv "$out" "$name.$status.json"
	echo "$name.$status.json" >&2
}

# keep FILE KEY IDS...: keep only the entries of FILE's list KEY whose job_id is in IDS.
keep() {
	local file=$1 key=$2
	shift 2
	python3 - "$file" "$key" "$@" <<'PY'
import json, sys
path, key, ids = sys.argv[1], sys.argv[2], {int(i) for i in sys.argv[3:]}
d = json.load(open(path))
d[key] = [j for j in d[key] if j["job_id"] in ids]
json.dump(d, open(path, "w"), indent=2)
PY
}

submit() { # submit NAME SCRIPT: submit and print the job ID
	local body
	body=$(printf '{"script": "#!/bin/bash\\n%s\\n", "job": {"name": "%s", "partition": "debug", "time_limit": 5, "current_working_directory": "%s", "environment": {"PATH": "/usr/bin:/bin"}, "standard_output": "%s/%%j.out"}}' "$2" "$1" "$dir" "$dir")
	get "submit-$1" POST /slurm/v0.0.38/job/submit "$body"
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job_id"])' "submit-$1.200.json"
}

ok=$(submit rec-ok true)
fail=$(submit rec-fail 'exit 3')
run=$(submit rec-run 'sleep 300')
rm -f submit-rec-fail.200.json submit-rec-run.200.json
mv submit-rec-ok.200.json submit.200.json

for i in $(seq 60); do
	[ "$(squeue -h -j "$ok,$fail" -o %i | wc -l)" = 0 ] && [ "$(squeue -h -j "$run" -t R -o %i | wc -l)" = 1 ] && break
	sleep 0.5
done
get openapi GET /openapi/v3
python3 - openapi.200.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump({"info": d["info"], "paths": {p: {} for p in sorted(d["paths"])}}, open(sys.argv[1], "w"), indent=2)
PY
get ping GET /slurm/v0.0.38/ping
get job-fail GET "/slurm/v0.0.38/job/$fail"
get job-running GET "/slurm/v0.0.38/job/$run"
get jobs GET /slurm/v0.0.38/jobs
keep jobs.200.json jobs "$ok" "$fail" "$run"
get job-unknown GET /slurm/v0.0.38/job/999999999
get cancel-unknown DELETE /slurm/v0.0.38/job/999999999
get cancel DELETE "/slurm/v0.0.38/job/$run"
get partitions GET /slurm/v0.0.38/partitions
get nodes GET /slurm/v0.0.38/nodes
for i in $(seq 60); do
	[ "$(sacct -n -X -j "$ok,$fail,$run" -o jobid -s CD,F,CA | wc -l)" = 3 ] && break
	sleep 0.5
done
get dbjobs-fail GET "/slurmdb/v0.0.38/jobs?job_name=rec-fail&start_time=$(date -d "-5 minutes" +%Y-%m-%dT%H%%3A%M%%3A%S)"
keep dbjobs-fail.200.json jobs "$fail"
get dbjob-unknown GET /slurmdb/v0.0.38/job/999999999
get associations GET "/slurmdb/v0.0.38/associations?user=$user"
get accounts GET /slurmdb/v0.0.38/accounts
get qos GET /slurmdb/v0.0.38/qos
get dbjobs-bad-filter GET "/slurmdb/v0.0.38/jobs?users=$user"
# A token that is not one: slurmrestd answers 500 with an errors array.
printf 'X-SLURM-USER-NAME: %s\nX-SLURM-USER-TOKEN: %s\n' "$user" "not.a.token" >"$headers"
get bad-token GET /slurm/v0.0.38/ping
: >"$headers"
get no-token GET /slurm/v0.0.38/ping
mv no-token.401.json no-token.401.txt
