// Package monitor watches batch runs and raises alerts when they stop
// working: a running job's Pipeline that stops heartbeating
// (heartbeat), a job whose Slices' communicator aborted (slice_lost),
// too many failures among the last visits (failure_rate), a run whose
// last job ended with visits left (ended_early), and a running job that
// ends no visit for too long (no_progress).
//
// The nouns: Rules, read from a small YAML file over Default (Load); a
// Snapshot, what a run looks like at one time (its jobs.RunStatus, with
// Slurm's word on its jobs, and the visits its state files record);
// Evaluate, a pure function from rules and a snapshot to the Conditions
// that hold; and Watch, which takes snapshots every Rules.Every and
// turns conditions that begin or end into Alerts (raised, cleared: once
// per condition, never at every look) sent to each Sink: the log
// (LogSink), a topic of the run's broker (TopicSink), a command the
// operator names (CommandSink, run without a shell).
//
// It is a use case above jobs, like the CLI: it reads runs only through
// jobs.Status and their state files opened read-only, and publishes
// through jobs.Relay. It never writes a state file, never signals or
// cancels a job, and never decides anything about a run: it tells.
package monitor
