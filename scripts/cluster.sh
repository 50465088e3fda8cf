#!/usr/bin/env bash
# scripts/cluster.sh: a local Slurm cluster for dpsbatch's integration tests and CI.
#
# Four simulated nodes n[1-4] (4 CPUs each) on this host, with munge and
# accounting (slurmdbd on MariaDB), started without systemd. Runs as root.
# Associations are enforced (AccountingStorageEnforce=associations): a job
# needs an account its user is associated with. root and slurmrest are in
# account science; the ordinary user dpsuser (for tests that must not run
# as root) is in account physics only.
# Nodes n3 and n4 carry two simulated GPUs each (GRES gpu:2, device files
# /dev/fakegpu0 and /dev/fakegpu1, clones of /dev/null).
# Memory is enforced: memory is a consumable resource (CR_CPU_Memory), a
# job that asks for none gets DefMemPerCPU=500 MB per CPU (4 CPUs x 500 MB
# = RealMemory 2000, so packing by CPUs is unchanged), and
# JobAcctGatherParams=OverMemoryKill kills a step whose tasks on a node use
# more than it was given, at the next sample (every 5 s). The tests' jobs
# use at most about 130 MB per CPU (sacct MaxRSS).
#
#   scripts/cluster.sh install     apt-get install what the cluster and the tests need (skipped when installed)
#   scripts/cluster.sh start       install if needed, start every missing daemon, wait for 4 idle nodes
#                                  (a no-op when all is up and the config is unchanged; a change of
#                                  the authentication lines alone restarts only slurmctld and slurmdbd)
#   scripts/cluster.sh start-rest  start, then slurmrestd as user slurmrest on unix:/run/dpsbatch/slurmrestd.sock
#                                  (local auth: every job it submits runs as slurmrest)
#   scripts/cluster.sh start-rest-jwt  start, then a second slurmrestd as user slurmrest on 127.0.0.1:6820
#                                  (JWT: jobs run as the token's user; mint one with
#                                  scontrol token username=NAME)
#   scripts/cluster.sh stop        stop slurmrestd, the keeper, slurmd's, slurmctld, slurmdbd, MariaDB and munged
#   scripts/cluster.sh status      print what runs; exit 0 only when the whole cluster is up
#   scripts/cluster.sh keep        (started by start, stopped by stop) the slurmd keeper: every second,
#                                  start again a node's slurmd that exited without stop, and log it
#                                  (to /var/log/slurm/keeper.log). Slurm 22.05's slurmd has been seen
#                                  to abort (a double free as a thread ends, core in /var/log/slurm)
#                                  mid-suite; its node then stays unusable until slurmd runs again.
#
# Environment: CLUSTER_WAIT_SECONDS (default 60) bounds the wait for the nodes.
# Logs: /var/log/slurm (slurmctld.log, slurmd-nX.log, slurmdbd.log, mariadb.log, slurmrestd.log).
set -euo pipefail

# chromium (headless) opens the run report in its test; python3 runs the
# worker stage's Python helper (python/) and test programs; jq is the
# program examples/ccdstats runs (the README's walkthrough and its test).
readonly PACKAGES=(slurmctld slurmd slurm-client slurmrestd munge openmpi-bin libopenmpi-dev
	slurmdbd mariadb-server curl pkg-config gcc nats-server chromium python3 jq)
readonly NODES=(n1 n2 n3 n4)
readonly CLUSTER_NAME=dps
readonly ACCOUNT=science
# An ordinary user and its own account, for tests of what a user who is
# not in $ACCOUNT sees.
readonly TEST_USER=dpsuser
readonly TEST_ACCOUNT=physics
readonly ETC_DIR=/etc/slurm
readonly SLURM_CONF=$ETC_DIR/slurm.conf
readonly DBD_CONF=$ETC_DIR/slurmdbd.conf
readonly GRES_CONF=$ETC_DIR/gres.conf
# The simulated GPUs of the GPU nodes: device files every GPU node shares.
readonly GPU_NODES='n[3-4]'
readonly GPU_DEVICES=(/dev/fakegpu0 /dev/fakegpu1)
readonly DB_PASS_FILE=$ETC_DIR/dpsbatch-db-password
readonly JOBID_CONF=$ETC_DIR/dpsbatch-jobid.conf
readonly DB_NAME=slurm_acct_db
readonly DB_USER=slurm
readonly LOG_DIR=/var/log/slurm
readonly RUN_DIR=/run/slurm
readonly STATE_DIR=/var/spool/slurmctld
readonly SPOOL_DIR=/var/spool/slurmd
readonly MYSQL_RUN_DIR=/run/mysqld
readonly MYSQL_PID_FILE=$MYSQL_RUN_DIR/mysqld.pid
readonly MUNGE_PID_FILE=/run/munge/munged.pid
readonly REST_USER=slurmrest
readonly REST_DIR=/run/dpsbatch
readonly REST_SOCK=$REST_DIR/slurmrestd.sock
readonly REST_PID_FILE=$RUN_DIR/slurmrestd.pid
readonly REST_API=v0.0.38
readonly REST_JWT_PID_FILE=$RUN_DIR/slurmrestd-jwt.pid
readonly REST_JWT_ADDR=127.0.0.1:6820
# The key slurmctld and slurmdbd sign and check JWT tokens with
# (AuthAltTypes=auth/jwt), readable by SlurmUser (root) only.
readonly JWT_KEY=/var/spool/slurm/jwt_hs256.key
readonly LOCK_FILE=/run/lock/dpsbatch-cluster.lock
readonly KEEPER_PID_FILE=$RUN_DIR/slurmd-keeper.pid
readonly KEEPER_LOG=$LOG_DIR/keeper.log
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT
readonly WAIT_SECONDS=${CLUSTER_WAIT_SECONDS:-60}
# Node states (sinfo %t) that count as "up".
readonly UP_STATES='^(idle|mix|alloc|comp)$'

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	printf 'cluster: error: %s\n' "$*" >&2
	exit 1
}

# tail_logs FILE...: show the end of each existing log on stderr.
tail_logs() {
	local f
	for f in "$@"; do
		[[ -s $f ]] || continue
		printf 'cluster: ---- last lines of %s ----\n' "$f" >&2
		tail -n 15 "$f" >&2 || true
	done
}

all_slurm_logs() {
	local n
	echo "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log"
	for n in "${NODES[@]}"; do echo "$LOG_DIR/slurmd-$n.log"; done
}

# ---------------------------------------------------------------- processes

# alive PID NAME: PID is a live (non-zombie) process whose command is NAME.
alive() {
	local pid=$1 name=$2 comm state
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == "$name" ]] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]]
}

# is_node_slurmd PID NODE: PID is "slurmd ... -N NODE ...".
is_node_slurmd() {
	local args
	args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ " $args " == *" -N $2 "* || " $args " == *" -N$2 "* ]]
}

# is_rest_kind PID KIND: PID is a slurmrestd with rest_auth/KIND (local or jwt).
is_rest_kind() {
	local args
	args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ " $args " == *" rest_auth/$2 "* ]]
}

# daemon_matches PID DAEMON NODE: PID is DAEMON's process for NODE (a
# slurmd's node name, a slurmrestd's kind of auth; "" for the others).
daemon_matches() {
	[[ -z $3 ]] && return 0
	case $2 in
	slurmd) is_node_slurmd "$1" "$3" ;;
	slurmrestd) is_rest_kind "$1" "$3" ;;
	esac
}

# daemon_pid DAEMON [NODE]: print the pid of the running daemon, or fail.
# NODE is a slurmd's node name, or a slurmrestd's kind (local, jwt).
# Reads the pid file first, then looks for the exact command name.
daemon_pid() {
	local d=$1 node=${2:-} pidfile pid user=""
	case $d in
	munged) pidfile=$MUNGE_PID_FILE ;;
	mariadbd) pidfile=$MYSQL_PID_FILE ;;
	slurmdbd) pidfile=$RUN_DIR/slurmdbd.pid ;;
	slurmctld) pidfile=$RUN_DIR/slurmctld.pid ;;
	slurmd) pidfile=$RUN_DIR/slurmd-$node.pid ;;
	slurmrestd)
		pidfile=$REST_PID_FILE user=$REST_USER
		[[ $node == jwt ]] && pidfile=$REST_JWT_PID_FILE
		;;
	*) die "unknown daemon $d" ;;
	esac
	pid=$(cat "$pidfile" 2>/dev/null || true)
	if alive "$pid" "$d" && daemon_matches "$pid" "$d" "$node"; then
		echo "$pid"
		return 0
	fi
	for pid in $(pgrep -x "$d" ${user:+-u "$user"} 2>/dev/null || true); do
		alive "$pid" "$d" || continue
		daemon_matches "$pid" "$d" "$node" || continue
		echo "$pid"
		return 0
	done
	return 1
}

# gone_within TENTHS PID...: wait up to TENTHS tenths of a second until no
# PID is alive (zombies count as gone); leaves the living ones in $left.
gone_within() {
	local tenths=$1 pid i
	shift
	for ((i = 0; i < tenths; i++)); do
		left=()
		for pid in "$@"; do
			[[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] && left+=("$pid")
		done
		((${#left[@]} == 0)) && return 0
		sleep 0.1
	done
	return 1
}

# stop_daemons LABEL PID...: SIGTERM, wait until gone (30 s), then SIGKILL.
stop_daemons() {
	local label=$1 left=()
	shift
	(($# > 0)) || return 0
	log "stopping $label (pid $*)"
	kill -TERM "$@" 2>/dev/null || true
	gone_within 300 "$@" && return 0
	log "$label did not exit in 30 s; killing pid ${left[*]}"
	kill -KILL "${left[@]}" 2>/dev/null || true
	gone_within 100 "$@" && return 0
	die "$label (pid ${left[*]}) still running after SIGKILL"
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

# close_fds: in a subshell about to exec a daemon, close every descriptor
# above 2 (the lock, and whatever pipes the caller, such as a CI runner,
# passed down), so no daemon keeps them open after this script ends.
close_fds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
	done
}

# spawn LOG COMMAND...: run a (self-daemonizing) command with stdin from
# /dev/null, stdout and stderr to LOG, and no other descriptor.
spawn() {
	local out=$1
	shift
	(
		close_fds
		exec "$@" </dev/null >>"$out" 2>&1
	)
}

# ---------------------------------------------------------------- install

missing_packages() {
	local installed
	installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
	local p
	for p in "${PACKAGES[@]}"; do
		grep -q "^$p ii" <<<"$installed" || echo "$p"
	done
}

POLICY_CREATED=0
TMP_FILES=()
cleanup() {
	if ((POLICY_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
	if ((${#TMP_FILES[@]})); then rm -f "${TMP_FILES[@]}"; fi
}
trap cleanup EXIT

cmd_install() {
	local missing
	missing=$(missing_packages)
	if [[ -z $missing ]]; then
		log "packages already installed"
		return 0
	fi
	log "installing: $(tr '\n' ' ' <<<"$missing")"
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -q -o DPkg::Lock::Timeout=600
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	# Keep package scripts from starting daemons (no init system here);
	# this script starts them itself.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, from dpsbatch scripts/cluster.sh install\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	local t0=$SECONDS
	"${apt[@]}" update >"$(install_log)" 2>&1 || {
		tail -n 20 "$(install_log)" >&2
		die "apt-get update failed"
	}
	# shellcheck disable=SC2086
	"${apt[@]}" install -y $missing >>"$(install_log)" 2>&1 9>&- || {
		tail -n 30 "$(install_log)" >&2
		die "apt-get install failed (full output: $(install_log))"
	}
	if ((POLICY_CREATED)); then
		rm -f /usr/sbin/policy-rc.d
		POLICY_CREATED=0
	fi
	missing=$(missing_packages)
	[[ -z $missing ]] || die "still not installed: $missing"
	log "installed in $((SECONDS - t0)) s"
}

install_log() {
	mkdir -p "$LOG_DIR"
	echo "$LOG_DIR/apt-install.log"
}

# ---------------------------------------------------------------- configuration

node_host() { hostname 2>/dev/null || uname -n; }

db_password() {
	if [[ ! -s $DB_PASS_FILE ]]; then
		mkdir -p "$ETC_DIR"
		(
			umask 077
			od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DB_PASS_FILE.tmp"
			mv "$DB_PASS_FILE.tmp" "$DB_PASS_FILE"
		)
		log "generated accounting database password in $DB_PASS_FILE"
	fi
	chmod 600 "$DB_PASS_FILE"
	cat "$DB_PASS_FILE"
}

slurm_conf() {
	local host=$1
	cat <<EOF
# Written by dpsbatch scripts/cluster.sh; edits are overwritten by its next start.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=500
MpiDefault=none
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
JobAcctGatherType=jobacct_gather/linux
# A step that uses more memory than it was given (what it asked for, else
# DefMemPerCPU) is killed at the next sample (every 5 s).
JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
ReturnToService=2
MinJobAge=600
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=n[1-2] NodeHostname=$host Port=17001-17002 CPUs=4 RealMemory=2000 State=UNKNOWN
NodeName=$GPU_NODES NodeHostname=$host Port=17003-17004 CPUs=4 RealMemory=2000 Gres=gpu:${#GPU_DEVICES[@]} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# FirstJobId, kept past the job IDs already in the accounting database.
Include $JOBID_CONF
EOF
}

gres_conf() {
	cat <<EOF
# Written by dpsbatch scripts/cluster.sh; edits are overwritten by its next start.
NodeName=$GPU_NODES Name=gpu File=/dev/fakegpu[0-$((${#GPU_DEVICES[@]} - 1))]
EOF
}

slurmdbd_conf() {
	cat <<EOF
# Written by dpsbatch scripts/cluster.sh; edits are overwritten by its next start.
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$1
StorageLoc=$DB_NAME
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
EOF
}

# install_file SRC DEST MODE: move SRC over DEST atomically.
install_file() {
	chmod "$3" "$1"
	mv -f "$1" "$2"
}

# ensure_gpu_devices: the device files of the simulated GPUs (clones of
# /dev/null, which a fresh /dev lacks), made before any slurmd starts.
ensure_gpu_devices() {
	local dev
	for dev in "${GPU_DEVICES[@]}"; do
		[[ -c $dev ]] && continue
		rm -f "$dev"
		mknod -m 666 "$dev" c 1 3 || die "could not create the simulated GPU device $dev"
	done
}

prepare_dirs() {
	mkdir -p "$ETC_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR" /run/munge /run/lock
	local n
	for n in "${NODES[@]}"; do mkdir -p "$SPOOL_DIR/$n"; done
}

# ---------------------------------------------------------------- daemons

ensure_munge() {
	if [[ ! -s /etc/munge/munge.key ]]; then
		log "creating /etc/munge/munge.key"
		mungekey --create --keyfile=/etc/munge/munge.key
		chown munge:munge /etc/munge/munge.key
		chmod 400 /etc/munge/munge.key
	fi
	if daemon_pid munged >/dev/null; then return 0; fi
	log "starting munged"
	spawn "$LOG_DIR/munged.out" munged --force ||
		{ tail_logs /var/log/munge/munged.log "$LOG_DIR/munged.out"; die "munged failed to start"; }
	munge_ok() { munge -n | unmunge; }
	wait_for 10 munge_ok ||
		{ tail_logs /var/log/munge/munged.log "$LOG_DIR/munged.out"; die "munge does not answer"; }
}

ensure_mariadb() {
	install -d -o mysql -g mysql "$MYSQL_RUN_DIR"
	if ! daemon_pid mariadbd >/dev/null; then
		log "starting MariaDB"
		touch "$LOG_DIR/mariadb.log"
		chown mysql:adm "$LOG_DIR/mariadb.log"
		spawn /dev/null start-stop-daemon --start --oknodo --background \
			--pidfile "$MYSQL_PID_FILE" --exec /usr/sbin/mariadbd -- \
			--user=mysql --pid-file="$MYSQL_PID_FILE" --log-error="$LOG_DIR/mariadb.log" \
			--innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900
	fi
	wait_for 60 mariadb-admin --silent ping ||
		{ tail_logs "$LOG_DIR/mariadb.log"; die "MariaDB does not answer"; }
}

ensure_database() {
	local pass=$1
	# Through stdin, so the password never shows in a process list.
	mariadb --batch <<EOF || die "could not create the accounting database"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF
}

dbd_answers() { timeout 10 sacctmgr -n -P list cluster format=cluster; }

ensure_slurmdbd() {
	if ! daemon_pid slurmdbd >/dev/null; then
		log "starting slurmdbd"
		spawn "$LOG_DIR/slurmdbd.log" slurmdbd ||
			{ tail_logs "$LOG_DIR/slurmdbd.log"; die "slurmdbd failed to start"; }
	fi
	wait_for 60 dbd_answers ||
		{ tail_logs "$LOG_DIR/slurmdbd.log" "$LOG_DIR/mariadb.log"; die "slurmdbd does not answer"; }
}

# ensure_account NAME: the Slurm account NAME exists in the cluster.
ensure_account() {
	[[ -n $(sacctmgr -n -P list account "$1" format=account 2>/dev/null) ]] && return 0
	log "adding account $1"
	sacctmgr -i -Q add account "$1" cluster="$CLUSTER_NAME" description=dpsbatch organization=dpsbatch >/dev/null || true
}

# ensure_assoc USER ACCOUNT: USER is associated with ACCOUNT (the first
# account a user is added to is its default).
ensure_assoc() {
	local user=$1 account=$2
	assoc() { sacctmgr -n -P list assoc cluster="$CLUSTER_NAME" account="$account" user="$user" format=user 2>/dev/null; }
	[[ -n $(assoc) ]] && return 0
	log "adding user $user to account $account"
	sacctmgr -i -Q add user "$user" account="$account" cluster="$CLUSTER_NAME" >/dev/null || true
	[[ -n $(assoc) ]] || log "warning: user $user is not in account $account"
}

# ensure_test_user: the ordinary Unix user TEST_USER exists.
ensure_test_user() {
	id -u "$TEST_USER" >/dev/null 2>&1 && return 0
	log "creating user $TEST_USER (an ordinary user, for tests)"
	useradd -m -s /bin/bash -c "dpsbatch tests" "$TEST_USER"
}

# ensure_accounts: the accounts and associations the tests use. Every job
# needs one (associations are enforced): root and slurmrest (whose jobs
# slurmrestd runs) are in ACCOUNT, TEST_USER in TEST_ACCOUNT alone.
ensure_accounts() {
	if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster 2>/dev/null) ]]; then
		sacctmgr -i -Q add cluster "$CLUSTER_NAME" >/dev/null || true
	fi
	ensure_rest_user
	ensure_test_user
	ensure_account "$ACCOUNT"
	ensure_account "$TEST_ACCOUNT"
	ensure_assoc root "$ACCOUNT"
	ensure_assoc "$REST_USER" "$ACCOUNT"
	ensure_assoc "$TEST_USER" "$TEST_ACCOUNT"
}

# set_first_job_id: before a slurmctld starts without saved state (first
# start, or state removed), make its job IDs continue after the ones the
# accounting database already holds, so sacct never mixes an old job with a
# new one of the same ID.
set_first_job_id() {
	local next=1
	if [[ ! -e $STATE_DIR/job_state && ! -e $STATE_DIR/job_state.old ]]; then
		next=$(mariadb -N -B -e "SELECT COALESCE(MAX(id_job), 0) + 1 FROM $DB_NAME.${CLUSTER_NAME}_job_table" 2>/dev/null || echo 1)
		[[ $next =~ ^[0-9]+$ ]] || next=1
		((next > 1)) && log "no saved slurmctld state: job IDs start at $next (after the accounting records)"
	elif [[ -s $JOBID_CONF ]]; then
		return 0
	fi
	printf 'FirstJobId=%s\n' "$next" >"$JOBID_CONF.tmp"
	install_file "$JOBID_CONF.tmp" "$JOBID_CONF" 644
}

ensure_slurmctld() {
	daemon_pid slurmctld >/dev/null && return 0
	set_first_job_id
	log "starting slurmctld"
	spawn "$LOG_DIR/slurmctld.log" slurmctld ||
		{ tail_logs "$LOG_DIR/slurmctld.log"; die "slurmctld failed to start"; }
	wait_for 10 daemon_pid slurmctld ||
		{ tail_logs "$LOG_DIR/slurmctld.log"; die "slurmctld exited"; }
}

ensure_slurmds() {
	local n
	for n in "${NODES[@]}"; do
		daemon_pid slurmd "$n" >/dev/null && continue
		log "starting slurmd -N $n"
		spawn "$LOG_DIR/slurmd-$n.log" slurmd -N "$n" ||
			{ tail_logs "$LOG_DIR/slurmd-$n.log"; die "slurmd -N $n failed to start"; }
	done
	for n in "${NODES[@]}"; do
		wait_for 10 daemon_pid slurmd "$n" ||
			{ tail_logs "$LOG_DIR/slurmd-$n.log"; die "slurmd -N $n exited"; }
	done
}

# node_states: "NODE STATE" lines from sinfo, or nothing.
node_states() { timeout 10 sinfo -N -h -o '%N %t' 2>/dev/null || true; }

# nodes_up [STATES]: all of n1..n4 are in an up state.
nodes_up() {
	local states n s
	if (($#)); then states=$1; else states=$(node_states); fi
	for n in "${NODES[@]}"; do
		s=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
		[[ $s =~ $UP_STATES ]] || return 1
	done
}

wait_nodes() {
	local deadline=$((SECONDS + WAIT_SECONDS)) resumed=0 states n s
	while :; do
		states=$(node_states)
		nodes_up "$states" && return 0
		if ! daemon_pid slurmctld >/dev/null; then
			tail_logs "$LOG_DIR/slurmctld.log"
			die "slurmctld exited while waiting for the nodes"
		fi
		# Nodes left down or drained by an earlier run come back once their slurmd answers.
		if ((!resumed && SECONDS + WAIT_SECONDS - deadline >= 10)); then
			resumed=1
			for n in "${NODES[@]}"; do
				s=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
				if [[ $s =~ ^(down|drain|drng|fail)$ ]]; then
					log "resuming node $n (state $s)"
					scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
				fi
			done
		fi
		if ((SECONDS >= deadline)); then
			printf 'cluster: nodes after %s s:\n%s\n' "$WAIT_SECONDS" "$states" >&2
			# shellcheck disable=SC2046
			tail_logs $(all_slurm_logs)
			die "the nodes did not all become idle within $WAIT_SECONDS s"
		fi
		sleep 0.5
	done
}

slurm_daemon_pids() {
	local n
	daemon_pid slurmrestd local || true
	daemon_pid slurmrestd jwt || true
	for n in "${NODES[@]}"; do daemon_pid slurmd "$n" || true; done
	daemon_pid slurmctld || true
	daemon_pid slurmdbd || true
}

stop_slurm() {
	local n pids=()
	stop_rest
	stop_keeper
	for n in "${NODES[@]}"; do
		pids+=($(daemon_pid slurmd "$n" || true))
	done
	stop_daemons "slurmd's" "${pids[@]}"
	stop_daemons slurmctld $(daemon_pid slurmctld || true)
	stop_daemons slurmdbd $(daemon_pid slurmdbd || true)
}

# ---------------------------------------------------------------- keeper

# keeper_pid: print the pid of the running slurmd keeper, or fail.
keeper_pid() {
	local pid args
	pid=$(cat "$KEEPER_PID_FILE" 2>/dev/null || true)
	alive "$pid" bash || return 1
	args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ " $args " == *"/cluster.sh keep "* ]] || return 1 # this script's, from any clone
	echo "$pid"
}

# ensure_keeper: start the slurmd keeper (cmd_keep) unless it runs, in a
# session of its own, with no descriptor of this script's.
ensure_keeper() {
	keeper_pid >/dev/null && return 0
	log "starting the slurmd keeper (log: $KEEPER_LOG)"
	(
		close_fds
		exec setsid bash "$SCRIPT" keep </dev/null >>"$KEEPER_LOG" 2>&1
	) &
	wait_for 5 keeper_pid || die "the slurmd keeper exited at once: see $KEEPER_LOG"
}

stop_keeper() {
	stop_daemons "slurmd keeper" $(keeper_pid || true)
	rm -f "$KEEPER_PID_FILE"
}

# cmd_keep: the keeper's loop. A slurmd that is gone is started again,
# under the cluster lock (taken without waiting: a start or stop that
# holds it is changing the daemons itself, and stop ends this loop first).
cmd_keep() {
	local n
	echo $$ >"$KEEPER_PID_FILE"
	printf '%s keeper: watching the slurmd of %s\n' "$(date -Is)" "${NODES[*]}"
	while sleep 1; do
		for n in "${NODES[@]}"; do
			daemon_pid slurmd "$n" >/dev/null && continue
			(
				flock -n 9 || exit 0
				daemon_pid slurmd "$n" >/dev/null && exit 0
				printf '%s keeper: slurmd -N %s is not running; starting it again\n' "$(date -Is)" "$n"
				printf '[%s] cluster keeper: slurmd -N %s was not running; starting it again\n' \
					"$(date +%Y-%m-%dT%H:%M:%S)" "$n" >>"$LOG_DIR/slurmd-$n.log"
				spawn "$LOG_DIR/slurmd-$n.log" slurmd -N "$n" ||
					printf '%s keeper: slurmd -N %s failed to start\n' "$(date -Is)" "$n"
			) 9>>"$LOCK_FILE"
		done
	done
}

# all_running: every daemon of the cluster (not slurmrestd) has a live process.
all_running() {
	local n
	daemon_pid munged >/dev/null && daemon_pid mariadbd >/dev/null &&
		daemon_pid slurmdbd >/dev/null && daemon_pid slurmctld >/dev/null || return 1
	for n in "${NODES[@]}"; do daemon_pid slurmd "$n" >/dev/null || return 1; done
}

# ---------------------------------------------------------------- slurmrestd

ensure_rest_user() {
	id -u "$REST_USER" >/dev/null 2>&1 && return 0
	log "creating user $REST_USER (for slurmrestd)"
	useradd -m -s /bin/bash -c "dpsbatch slurmrestd" "$REST_USER"
}

rest_ping() {
	timeout 10 curl -sf --unix-socket "$REST_SOCK" "http://localhost/slurm/$REST_API/ping"
}

# rest_jwt_ping: an authenticated ping of the JWT slurmrestd, with a token
# of a minute for REST_USER; the token goes to curl on stdin, never in
# its arguments.
rest_jwt_ping() {
	local token
	token=$(timeout 10 scontrol token username="$REST_USER" lifespan=60 2>/dev/null) || return 1
	token=${token#SLURM_JWT=}
	printf 'X-SLURM-USER-NAME: %s\nX-SLURM-USER-TOKEN: %s\n' "$REST_USER" "$token" |
		timeout 10 curl -sf -H @- "http://$REST_JWT_ADDR/slurm/$REST_API/ping"
}

stop_rest() {
	stop_daemons slurmrestd $(daemon_pid slurmrestd local || true)
	rm -f "$REST_PID_FILE" "$REST_SOCK"
	stop_daemons "slurmrestd (jwt)" $(daemon_pid slurmrestd jwt || true)
	rm -f "$REST_JWT_PID_FILE"
}

# launch_rest PIDFILE LOG ENV... -- ARGS...: start slurmrestd ARGS as
# REST_USER from /tmp, with a clean environment plus ENV, writing its pid.
launch_rest() {
	local pidfile=$1 out=$2 home env=()
	shift 2
	while (($#)) && [[ $1 != -- ]]; do env+=("$1"); shift; done
	shift
	home=$(getent passwd "$REST_USER" | cut -d: -f6)
	(
		cd /tmp
		umask 000
		close_fds
		exec setsid setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups \
			env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" USER="$REST_USER" LOGNAME="$REST_USER" \
			"${env[@]}" slurmrestd "$@" </dev/null >>"$out" 2>&1
	) &
	echo $! >"$pidfile"
}

start_rest() {
	ensure_rest_user
	if daemon_pid slurmrestd local >/dev/null && [[ -S $REST_SOCK ]] && rest_ping >/dev/null 2>&1; then
		log "slurmrestd already answers on $REST_SOCK"
		return 0
	fi
	stop_daemons slurmrestd $(daemon_pid slurmrestd local || true)
	rm -f "$REST_PID_FILE" "$REST_SOCK"
	install -d -m 755 -o "$REST_USER" -g "$REST_USER" "$REST_DIR"
	log "starting slurmrestd as $REST_USER on unix:$REST_SOCK"
	launch_rest "$REST_PID_FILE" "$LOG_DIR/slurmrestd.log" -- \
		-s "openapi/$REST_API" -a rest_auth/local "unix:$REST_SOCK"
	if ! wait_for 15 test -S "$REST_SOCK"; then
		tail_logs "$LOG_DIR/slurmrestd.log"
		die "slurmrestd did not create $REST_SOCK"
	fi
	chmod 666 "$REST_SOCK"
	if ! rest_ping >/dev/null 2>&1; then
		tail_logs "$LOG_DIR/slurmrestd.log"
		die "slurmrestd does not answer /slurm/$REST_API/ping on $REST_SOCK"
	fi
	log "slurmrestd answers: curl --unix-socket $REST_SOCK http://localhost/slurm/$REST_API/ping"
}

# jwt_live: the running slurmctld accepts JWT tokens.
jwt_live() {
	local config
	config=$(timeout 10 scontrol show config 2>/dev/null) || return 1
	grep -q '^AuthAltTypes *= *auth/jwt' <<<"$config"
}

# start_rest_jwt: a second slurmrestd, with JWT auth on REST_JWT_ADDR
# (SLURM_JWT=daemon: it authenticates each request by its token, so the
# job runs as the token's user; local auth cannot share the process).
start_rest_jwt() {
	ensure_rest_user
	jwt_live || die "slurmctld does not accept JWT tokens (AuthAltTypes): run scripts/cluster.sh start"
	if daemon_pid slurmrestd jwt >/dev/null && rest_jwt_ping >/dev/null 2>&1; then
		log "slurmrestd (jwt) already answers on $REST_JWT_ADDR"
		return 0
	fi
	stop_daemons "slurmrestd (jwt)" $(daemon_pid slurmrestd jwt || true)
	log "starting slurmrestd (jwt) as $REST_USER on $REST_JWT_ADDR"
	launch_rest "$REST_JWT_PID_FILE" "$LOG_DIR/slurmrestd-jwt.log" SLURM_JWT=daemon -- \
		-s "openapi/$REST_API,openapi/db$REST_API" -a rest_auth/jwt "$REST_JWT_ADDR"
	if ! wait_for 15 rest_jwt_ping; then
		tail_logs "$LOG_DIR/slurmrestd-jwt.log"
		die "slurmrestd (jwt) does not answer /slurm/$REST_API/ping on $REST_JWT_ADDR"
	fi
	log "slurmrestd (jwt) answers on http://$REST_JWT_ADDR (headers X-SLURM-USER-NAME, X-SLURM-USER-TOKEN)"
}

# ensure_jwt_key: the key JWT tokens are signed with, made once.
ensure_jwt_key() {
	[[ -s $JWT_KEY ]] && return 0
	install -d -m 700 "$(dirname "$JWT_KEY")"
	(
		umask 077
		dd if=/dev/urandom of="$JWT_KEY.tmp" bs=32 count=1 status=none
		mv -f "$JWT_KEY.tmp" "$JWT_KEY"
	)
	log "generated the JWT key $JWT_KEY"
}

# auth_only_change OLD NEW: OLD exists and differs from NEW only in the
# AuthAlt* lines, which slurmctld and slurmdbd read and slurmd does not need.
auth_only_change() {
	[[ -s $1 ]] && cmp -s <(grep -v '^AuthAlt' "$1") <(grep -v '^AuthAlt' "$2")
}

# restart_controllers NEW_CONF NEW_DBD: install the new files and stop
# slurmdbd and slurmctld where their file changed (the caller starts them
# again), leaving the slurmd's and their jobs running.
restart_controllers() {
	if ! cmp -s "$2" "$DBD_CONF"; then
		log "slurmdbd.conf changed (authentication only): restarting slurmdbd"
		stop_daemons slurmdbd $(daemon_pid slurmdbd || true)
		install_file "$2" "$DBD_CONF" 600
	fi
	if ! cmp -s "$1" "$SLURM_CONF"; then
		log "slurm.conf changed (authentication only): restarting slurmctld alone"
		stop_daemons slurmctld $(daemon_pid slurmctld || true)
		install_file "$1" "$SLURM_CONF" 644
	fi
	rm -f "$1" "$2"
}

# ---------------------------------------------------------------- subcommands

# cmd_start: returns 0 when the cluster is up.
cmd_start() {
	local t0=$SECONDS host pass tmp_conf tmp_dbd tmp_gres changed=0
	cmd_install
	prepare_dirs
	ensure_gpu_devices
	ensure_jwt_key
	[[ -s $JOBID_CONF ]] || printf 'FirstJobId=1\n' >"$JOBID_CONF"
	host=$(node_host)
	pass=$(db_password)
	tmp_conf=$(mktemp "$ETC_DIR/.slurm.conf.XXXXXX")
	tmp_dbd=$(mktemp "$ETC_DIR/.slurmdbd.conf.XXXXXX")
	tmp_gres=$(mktemp "$ETC_DIR/.gres.conf.XXXXXX")
	TMP_FILES+=("$tmp_conf" "$tmp_dbd" "$tmp_gres")
	slurm_conf "$host" >"$tmp_conf"
	slurmdbd_conf "$pass" >"$tmp_dbd"
	gres_conf >"$tmp_gres"
	cmp -s "$tmp_conf" "$SLURM_CONF" || changed=1
	cmp -s "$tmp_gres" "$GRES_CONF" || changed=1
	cmp -s "$tmp_dbd" "$DBD_CONF" || changed=1
	[[ $(stat -c %a "$DBD_CONF" 2>/dev/null) == 600 ]] || changed=1

	if ((!changed)) && all_running && nodes_up; then
		rm -f "$tmp_conf" "$tmp_dbd" "$tmp_gres"
		ensure_accounts
		ensure_keeper
		log "already running, configuration unchanged"
		return 0
	fi

	ensure_munge
	ensure_mariadb
	ensure_database "$pass"
	local rest_was_running=0 jwt_was_running=0
	if ((changed)) && all_running && auth_only_change "$SLURM_CONF" "$tmp_conf" &&
		auth_only_change "$DBD_CONF" "$tmp_dbd" && [[ $(stat -c %a "$DBD_CONF") == 600 ]] &&
		cmp -s "$tmp_gres" "$GRES_CONF"; then
		rm -f "$tmp_gres"
		restart_controllers "$tmp_conf" "$tmp_dbd"
	elif ((changed)); then
		daemon_pid slurmrestd local >/dev/null && rest_was_running=1
		daemon_pid slurmrestd jwt >/dev/null && jwt_was_running=1
		if [[ -n $(slurm_daemon_pids) ]]; then
			log "configuration changed: restarting the Slurm daemons"
			stop_slurm
		fi
		install_file "$tmp_dbd" "$DBD_CONF" 600
		install_file "$tmp_gres" "$GRES_CONF" 644
		install_file "$tmp_conf" "$SLURM_CONF" 644
		log "wrote $SLURM_CONF, $GRES_CONF and $DBD_CONF"
	else
		rm -f "$tmp_conf" "$tmp_dbd" "$tmp_gres"
	fi
	ensure_slurmdbd
	ensure_accounts
	ensure_slurmctld
	ensure_slurmds
	ensure_keeper
	wait_nodes
	ensure_rest_user
	((rest_was_running)) && start_rest
	((jwt_was_running)) && start_rest_jwt
	log "cluster up in $((SECONDS - t0)) s: $(node_states | tr '\n' ' ')"
}

# cancel_jobs: cancel every job, and wait (bounded) for their step daemons.
cancel_jobs() {
	daemon_pid slurmctld >/dev/null || return 0
	local jobs i pid left
	jobs=$(timeout 10 squeue -h -t PD,R,S,CG,CF -o %i 2>/dev/null | tr '\n' ' ' || true)
	[[ -n ${jobs// /} ]] || return 0
	log "cancelling jobs: $jobs"
	# shellcheck disable=SC2086
	timeout 10 scancel $jobs 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		left=""
		for pid in $(pgrep -x slurmstepd || true); do alive "$pid" slurmstepd && left+=" $pid"; done
		[[ -z $left ]] && return 0
		sleep 0.1
	done
	log "warning: slurmstepd still running (pid$left)"
}

cmd_stop() {
	cancel_jobs
	stop_slurm
	stop_daemons MariaDB $(daemon_pid mariadbd || true)
	stop_daemons munged $(daemon_pid munged || true)
	log "stopped"
}

cmd_status() {
	local ok=0 pid n states
	show() { # show LABEL DAEMON [NODE] [optional]
		if pid=$(daemon_pid "$2" ${3:+"$3"}); then
			printf '%-12s running (pid %s)\n' "$1" "$pid"
		else
			printf '%-12s not running\n' "$1"
			[[ ${4:-} == optional ]] || ok=1
		fi
	}
	if [[ -n $(missing_packages) ]]; then
		echo "packages     missing: $(missing_packages | tr '\n' ' ')"
		return 1
	fi
	show munged munged
	show mariadb mariadbd
	show slurmdbd slurmdbd
	show slurmctld slurmctld
	for n in "${NODES[@]}"; do show "slurmd $n" slurmd "$n"; done
	if pid=$(keeper_pid); then
		printf '%-12s running (pid %s)\n' keeper "$pid"
	else
		printf '%-12s not running\n' keeper
		ok=1
	fi
	show slurmrestd slurmrestd local optional
	show "rest (jwt)" slurmrestd jwt optional
	if daemon_pid slurmrestd local >/dev/null; then
		if rest_ping >/dev/null 2>&1; then
			echo "rest         answers on $REST_SOCK"
		else
			echo "rest         does not answer on $REST_SOCK"
		fi
	fi
	if daemon_pid slurmrestd jwt >/dev/null; then
		if rest_jwt_ping >/dev/null 2>&1; then
			echo "rest (jwt)   answers on $REST_JWT_ADDR"
		else
			echo "rest (jwt)   does not answer on $REST_JWT_ADDR"
		fi
	fi
	states=""
	daemon_pid slurmctld >/dev/null && states=$(node_states)
	if [[ -n $states ]]; then
		echo "nodes:"
		sed 's/^/  /' <<<"$states"
	else
		echo "nodes        sinfo does not answer"
	fi
	nodes_up "$states" || ok=1
	if daemon_pid slurmdbd >/dev/null && timeout 10 sacct -n -X -o jobid -S now-1minutes >/dev/null 2>&1; then
		echo "sacct        answers"
	else
		echo "sacct        does not answer"
		ok=1
	fi
	if ((ok == 0)); then echo "cluster      up"; else echo "cluster      NOT up"; fi
	return $ok
}

usage() {
	sed -n '2,/^# Logs:/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

main() {
	(($# == 1)) || usage
	case $1 in
	install | start | start-rest | start-rest-jwt | stop | status | keep) ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
	((EUID == 0)) || die "must run as root"
	if [[ $1 == status ]]; then
		cmd_status
		return
	fi
	if [[ $1 == keep ]]; then
		cmd_keep
		return
	fi
	mkdir -p "$(dirname "$LOCK_FILE")"
	exec 9>>"$LOCK_FILE"
	flock -w 900 9 || die "another scripts/cluster.sh holds $LOCK_FILE"
	case $1 in
	install) cmd_install ;;
	start) cmd_start ;;
	start-rest)
		cmd_start
		start_rest
		;;
	start-rest-jwt)
		cmd_start
		start_rest_jwt
		;;
	stop) cmd_stop ;;
	esac
}

# Sourced (scripts/cluster_keeper_test.sh), it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
