package state

import (
	"context"
	"database/sql"
	"fmt"
)

// applicationID marks a dpsbatch state file (PRAGMA application_id):
// "DPSB" in ASCII.
const applicationID = 0x44505342

// migrations are the schema's steps, in order: migrations[i] takes a file
// from version i to version i+1 (PRAGMA user_version). A step is only ever
// appended, never edited once released: files in the wild are at every
// version. Each step runs inside the transaction that also sets the new
// version, so a file is at one version or the next, never in between.
var migrations = []string{
	// 1: the run, its jobs, its visits, stage timings and slice failures.
	`
CREATE TABLE runs (
	id         TEXT PRIMARY KEY NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	dir        TEXT NOT NULL DEFAULT '',
	pipeline   TEXT NOT NULL DEFAULT '',
	policy_sum TEXT NOT NULL DEFAULT '',
	site       TEXT NOT NULL DEFAULT '',
	partition  TEXT NOT NULL DEFAULT '',
	created    INTEGER NOT NULL,          -- Unix nanoseconds, as every time here
	settings   TEXT NOT NULL DEFAULT ''   -- free JSON of the front end
);

CREATE TABLE jobs (
	id        TEXT PRIMARY KEY NOT NULL,  -- Slurm job ID
	attempt   INTEGER NOT NULL,
	submitted INTEGER,
	started   INTEGER,
	ended     INTEGER,
	state     TEXT NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL DEFAULT 0,
	reason    TEXT NOT NULL DEFAULT '',
	host      TEXT NOT NULL DEFAULT ''
);

-- The visit states, by the code visits.state stores, with how many visits
-- are in each (so that status reads five rows instead of counting the
-- visit list) and, for done, the earliest start and latest end of a done
-- visit (for the rate). The triggers below keep them as visits change
-- state; whatever inserts visits adds them to the count of their state in
-- the same transaction (a trigger per inserted row doubled the time of
-- adding a million).
CREATE TABLE visit_states (
	code   INTEGER PRIMARY KEY,
	name   TEXT NOT NULL UNIQUE,
	visits INTEGER NOT NULL DEFAULT 0,
	first  INTEGER,
	last   INTEGER
);
INSERT INTO visit_states (code, name) VALUES
	(0, 'pending'), (1, 'running'), (2, 'done'), (3, 'failed'), (4, 'interrupted');

CREATE TABLE visits (
	seq      INTEGER PRIMARY KEY,         -- position in the visit list, from 1
	id       TEXT NOT NULL,
	state    INTEGER NOT NULL DEFAULT 0,  -- visit_states.code
	attempts INTEGER NOT NULL DEFAULT 0,
	job      TEXT,
	started  INTEGER,
	ended    INTEGER,
	err      TEXT
);
-- Visit IDs are unique. AddVisits drops and rebuilds this index around a
-- large first insert: building it from sorted keys is faster than a
-- million inserts at random places.
CREATE UNIQUE INDEX visits_by_id ON visits (id);
-- By state, then seq (the rowid every index ends with): what is runnable,
-- retryable or failed, in visit-list order, without sorting.
CREATE INDEX visits_by_state ON visits (state);

CREATE TRIGGER visits_moved AFTER UPDATE OF state ON visits WHEN OLD.state <> NEW.state BEGIN
	UPDATE visit_states SET visits = visits - 1 WHERE code = OLD.state;
	UPDATE visit_states SET visits = visits + 1 WHERE code = NEW.state;
END;
CREATE TRIGGER visits_done AFTER UPDATE OF state ON visits WHEN NEW.state = 2 AND OLD.state <> 2 BEGIN
	UPDATE visit_states SET
		first = min(coalesce(first, NEW.started, NEW.ended), coalesce(NEW.started, NEW.ended, first)),
		last  = max(coalesce(last, NEW.ended), coalesce(NEW.ended, last))
	WHERE code = 2;
END;

-- One row per stage per visit attempt that ran it.
CREATE TABLE stage_times (
	visit   INTEGER NOT NULL,  -- visits.seq
	attempt INTEGER NOT NULL,
	stage   TEXT NOT NULL,
	took    INTEGER NOT NULL   -- nanoseconds
);
-- Per stage sums of stage_times, so that status need not scan it.
CREATE TABLE stage_totals (
	stage TEXT PRIMARY KEY NOT NULL,  -- rowid: order first seen, the pipeline's
	calls INTEGER NOT NULL,
	took  INTEGER NOT NULL
);

CREATE TABLE slice_failures (
	id      INTEGER PRIMARY KEY,
	visit   INTEGER NOT NULL,  -- visits.seq
	attempt INTEGER NOT NULL,
	stage   TEXT NOT NULL,
	slice   INTEGER NOT NULL,
	data_id TEXT NOT NULL,
	err     TEXT NOT NULL
);
`,
	// 2: room for the events the run received and sent (the events issue
	// adds its methods).
	`
CREATE TABLE events (
	id    INTEGER PRIMARY KEY,
	at    INTEGER NOT NULL,
	dir   TEXT NOT NULL CHECK (dir IN ('in', 'out')),
	topic TEXT NOT NULL,
	props TEXT NOT NULL DEFAULT '{}'   -- JSON object of the event's properties
);
`,
	// 3: what the events issue needs. A job's broker address and
	// heartbeat; when the run's input was closed (no-more-data); the
	// events' own fields. Columns added with ALTER TABLE ADD COLUMN and a
	// constant default: SQLite does not rewrite the tables, so migrating a
	// file of a million visits is instant.
	`
ALTER TABLE jobs ADD COLUMN broker TEXT NOT NULL DEFAULT '';         -- nats://host:port, never with user info
ALTER TABLE jobs ADD COLUMN heartbeat INTEGER;                       -- rank 0's last heartbeat
ALTER TABLE jobs ADD COLUMN heartbeat_visit TEXT NOT NULL DEFAULT ''; -- the visit in flight then, '' when idle

ALTER TABLE runs ADD COLUMN input_closed INTEGER;                     -- when a no-more-data event reached the run
ALTER TABLE runs ADD COLUMN input_closed_why TEXT NOT NULL DEFAULT '';

ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT '';          -- '' (data), no-more-data, shutdown, ...
ALTER TABLE events ADD COLUMN pipeline TEXT NOT NULL DEFAULT '';      -- the sending pipeline
ALTER TABLE events ADD COLUMN sender TEXT NOT NULL DEFAULT '';        -- the host it was published from
ALTER TABLE events ADD COLUMN event_time INTEGER;                     -- the event's own time (at: when recorded)
ALTER TABLE events ADD COLUMN job TEXT NOT NULL DEFAULT '';           -- the job that recorded it
-- id is the rowid: Events' After (id > ?) is a range of the table itself.
-- By topic (then id, as every index ends with the rowid): Events of one
-- topic after an ID, or the last N of a topic, is a range of this index.
CREATE INDEX events_by_topic ON events (topic);
`,
	// Each start of a job on its own: Slurm runs a requeued job (a node
	// failure, scontrol requeue, preemption) again under the same ID, and
	// the jobs row then describes its latest start. A job that started
	// before this migration keeps that start as its first.
	`
CREATE TABLE job_starts (
	job       TEXT NOT NULL,              -- jobs.id
	restart   INTEGER NOT NULL,           -- Slurm's SLURM_RESTART_COUNT: 0 on the first start
	host      TEXT NOT NULL DEFAULT '',   -- where rank 0 ran
	started   INTEGER,
	ended     INTEGER,
	state     TEXT NOT NULL DEFAULT '',   -- how it ended: rank 0's record, or Slurm's (REQUEUED, NODE_FAIL, PREEMPTED)
	exit_code INTEGER NOT NULL DEFAULT 0,
	reason    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job, restart)
) WITHOUT ROWID;
INSERT INTO job_starts (job, restart, host, started, ended, state, exit_code, reason)
	SELECT id, 0, host, started, ended, CASE WHEN ended IS NULL THEN '' ELSE state END, exit_code, reason
	FROM jobs WHERE started IS NOT NULL;
`,
	// 5: events the Pipeline dropped, with why: a message that did not
	// decode as an event, or an event malformed for its receiver (a
	// property missing or of the wrong type). '' for every event taken.
	// The partial index holds only the dropped ones, so counting them
	// does not read the table.
	`
ALTER TABLE events ADD COLUMN dropped TEXT NOT NULL DEFAULT '';
CREATE INDEX events_dropped ON events (id) WHERE dropped != '';
`,
	// 6: submissions, recorded before sbatch is called, so that a job
	// whose submitter died before recording it is found (by the name it
	// carries) and adopted; and the run's lock on file systems without
	// flock. The jobs table stays keyed by Slurm's job ID: a submission
	// names its job once it is known.
	`
CREATE TABLE submissions (
	token    TEXT PRIMARY KEY NOT NULL,  -- drawn for the submission, carried in the job's name
	attempt  INTEGER NOT NULL,
	name     TEXT NOT NULL,              -- the job name it was submitted under
	recorded INTEGER NOT NULL,           -- when, before sbatch was called
	job      TEXT,                       -- Slurm's job ID (jobs.id) once known
	void     TEXT NOT NULL DEFAULT ''    -- why it never became a job; '' while it may have
);
CREATE TABLE run_lock (
	id      INTEGER PRIMARY KEY CHECK (id = 1),  -- one lock a run
	token   TEXT NOT NULL,     -- the holder's, to release it
	host    TEXT NOT NULL,
	pid     INTEGER NOT NULL,
	command TEXT NOT NULL,
	taken   INTEGER NOT NULL,
	expires INTEGER NOT NULL   -- taken + lease: a holder that died on another host frees it then
);
`,
	// 7: what each job used, from Slurm's accounting, stored once the
	// record is final (the job and its steps ended): the command that
	// looks at the run next reads it (jobs/usage.go), and never asks
	// again for a job that has a row here.
	`
CREATE TABLE job_usage (
	job      TEXT PRIMARY KEY NOT NULL,  -- jobs.id
	state    TEXT NOT NULL DEFAULT '',   -- the job's state in accounting
	elapsed  INTEGER NOT NULL,           -- nanoseconds
	cpus     INTEGER NOT NULL DEFAULT 0, -- allocated
	req_mem  INTEGER NOT NULL DEFAULT 0, -- megabytes the job asked for in all; 0: none recorded
	slice_mem INTEGER NOT NULL DEFAULT 0, -- megabytes each slice asked for (the run's); 0: none
	recorded INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE step_usage (
	job          TEXT NOT NULL,              -- job_usage.job
	step         TEXT NOT NULL,              -- batch, extern, 0, 1, ...
	name         TEXT NOT NULL DEFAULT '',
	state        TEXT NOT NULL DEFAULT '',
	elapsed      INTEGER NOT NULL,           -- nanoseconds
	cpu          INTEGER NOT NULL,           -- nanoseconds of user and system time, all tasks
	tasks        INTEGER NOT NULL DEFAULT 0,
	max_rss      INTEGER NOT NULL DEFAULT 0, -- bytes, the largest of one task; 0: not sampled
	max_rss_node TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job, step)
);  -- with a rowid: the steps' order, as accounting lists them
`,
	// 8: captures (freeze-dried stage inputs, package capture): the file
	// of each slice failure, and of a visit's failure on the Pipeline,
	// relative to the run directory; '' when none was written.
	`
ALTER TABLE slice_failures ADD COLUMN capture TEXT NOT NULL DEFAULT '';
ALTER TABLE visits ADD COLUMN capture TEXT NOT NULL DEFAULT '';
`,
	// 9: each data ID's outcome in its visit's latest attempt that ran
	// it (an attempt that skipped it as done leaves its row): what
	// status counts and lists, and what resume runs again.
	`
CREATE TABLE data_ids (
	visit   INTEGER NOT NULL,  -- visits.seq
	data_id TEXT NOT NULL,
	outcome TEXT NOT NULL,     -- done, failed, interrupted, skipped
	attempt INTEGER NOT NULL,  -- the visit's attempt that recorded it
	stage   TEXT NOT NULL DEFAULT '',  -- where it failed
	err     TEXT NOT NULL DEFAULT '',  -- why it failed (a program's error ends with its stderr) or was not done
	PRIMARY KEY (visit, data_id)
) WITHOUT ROWID;
CREATE INDEX data_ids_by_outcome ON data_ids (outcome);
-- How many data IDs have each outcome, kept by the triggers below, so
-- that status reads four rows instead of counting data_ids.
CREATE TABLE data_id_outcomes (
	outcome TEXT PRIMARY KEY NOT NULL,
	n       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO data_id_outcomes (outcome) VALUES ('done'), ('failed'), ('interrupted'), ('skipped');
CREATE TRIGGER data_ids_added AFTER INSERT ON data_ids BEGIN
	UPDATE data_id_outcomes SET n = n + 1 WHERE outcome = NEW.outcome;
END;
CREATE TRIGGER data_ids_moved AFTER UPDATE OF outcome ON data_ids WHEN OLD.outcome <> NEW.outcome BEGIN
	UPDATE data_id_outcomes SET n = n - 1 WHERE outcome = OLD.outcome;
	UPDATE data_id_outcomes SET n = n + 1 WHERE outcome = NEW.outcome;
END;
`,
	// 10: the files a data ID's stages declared they write (an exec
	// stage's outputs), with their sizes, as the attempt that last made
	// them found them once the program had ended.
	`
CREATE TABLE outputs (
	visit   INTEGER NOT NULL,  -- visits.seq
	data_id TEXT NOT NULL,
	path    TEXT NOT NULL,     -- absolute
	size    INTEGER NOT NULL,  -- bytes
	attempt INTEGER NOT NULL,  -- the visit's attempt that made it
	PRIMARY KEY (visit, data_id, path)
) WITHOUT ROWID;
`,
}

// schemaVersion is the schema version this dpsbatch writes and reads.
var schemaVersion = len(migrations)

// header reads the file's application ID and schema version.
func header(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (app, version int, err error) {
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&app); err != nil {
		return 0, 0, err
	}
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, 0, err
	}
	return app, version, nil
}

// migrate takes the file from version from to version to, in tx.
func migrate(ctx context.Context, tx *sql.Tx, from, to int) error {
	for v := from; v < to; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrating from schema version %d to %d: %w", v, v+1, err)
		}
	}
	// PRAGMA takes no parameters; both values are ours.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", applicationID, to)); err != nil {
		return fmt.Errorf("setting schema version %d: %w", to, err)
	}
	return nil
}
