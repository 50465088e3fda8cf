package injob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// ServeBroker serves the embedded broker of the run in dir for job's
// restart-th start (RestartCount) until ctx ends: the job script starts
// it (`dpsbatch broker`) in the background on the batch host before the
// run's steps, whose Pipelines dial it, and stops it once they have
// ended. It records the job's start and where it listens in the run's
// state file (the job's row). ready, when not nil, is called once it
// serves.
func ServeBroker(ctx context.Context, dir, job string, restart int, log *slog.Logger, ready func(url string)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if job == "" {
		job = localJob // as the Pipeline outside Slurm calls it (InJob.JobID)
	}
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return err
	}
	// The start first: a requeued job's record then forgets its earlier
	// start's broker, which the relay commands must not dial. A step's
	// rank 0 records it in its own state file: here, only in a run's
	// state file that no step shares.
	if !rundir.StepIn(l, set) {
		if err := withJob(l, func(st *state.Store) error { return startJob(st, job, restart) }); err != nil {
			return err
		}
	}
	if err := WriteServed(l, job, restart, brokerWaiting); err != nil {
		return err
	}
	defer os.Remove(servedFile(l, job, restart)) // its Pipelines find no broker once it has gone
	s, err := serveWhenFree(ctx, l, set.Broker, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := withJob(l, func(st *state.Store) error { return st.SetJobBroker(job, s.URL) }); err != nil {
		return err
	}
	if err := WriteServed(l, job, restart, s.URL); err != nil {
		return err
	}
	log.Info("broker serving", "url", s.URL, "store", l.BrokerDir())
	if ready != nil {
		ready(s.URL)
	}
	<-ctx.Done()
	lingerForPipelines(s, brokerLinger)
	return nil
}

// brokerLinger is how long a stopped broker serves on while Pipelines are
// connected to it.
const brokerLinger = 20 * time.Second

// lingerForPipelines returns once no client but s's own connection is
// left on its server, or after at most d: Slurm signals the job's
// processes all at once when it requeues or cancels the job, and the
// steps' Pipelines still announce their end through the broker as they
// stop. At the job's normal end they have gone already.
func lingerForPipelines(s *rundir.Served, d time.Duration) {
	for end := time.Now().Add(d); s.Clients() > 1 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
}

// startJob records job's restart-th start in st, and the job itself
// when its submitter died before recording it.
func startJob(st *state.Store, job string, restart int) error {
	host, _ := os.Hostname()
	err := st.StartJob(job, restart, host, time.Now())
	if errors.Is(err, state.ErrNotFound) {
		if _, err = recordSelf(st, job, host, time.Now()); err == nil {
			err = st.StartJob(job, restart, host, time.Now())
		}
	}
	return err
}

// serveWhenFree serves the run's embedded broker once its store is free:
// another job of the run (one Slurm has not finished ending) or a relay
// command may hold it a while.
func serveWhenFree(ctx context.Context, l rundir.Layout, b rundir.BrokerSettings, log *slog.Logger) (*rundir.Served, error) {
	for {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		s, err := rundir.Serve(sctx, l, b, "", 30*time.Second, "dpsbatch broker", "", log)
		cancel()
		if !errors.Is(err, rundir.ErrBrokerBusy) || ctx.Err() != nil {
			return s, err
		}
		log.Warn("the run's broker store is still in use (another job of the run ending?): waiting for it", "store", l.BrokerDir())
	}
}

// servedFile is where the run's broker for job's restart-th start says,
// for the steps' Pipelines, that it waits for the store or where it
// listens.
func servedFile(l rundir.Layout, job string, restart int) string {
	return filepath.Join(l.BrokerDir(), fmt.Sprintf("served-%s-%d", url.PathEscape(job), restart))
}

// brokerWaiting is what the served file holds while its broker waits for
// the run's store.
const brokerWaiting = "waiting"

// WriteServed records, for job's restart-th start, that the run's broker
// serves at url, or waits for the store (brokerWaiting); it is replaced
// atomically. The steps' Pipelines read it (servedURL), whether or not
// the state file has a row for the job.
func WriteServed(l rundir.Layout, job string, restart int, url string) error {
	f := servedFile(l, job, restart)
	if err := os.MkdirAll(l.BrokerDir(), 0o700); err != nil {
		return fmt.Errorf("injob: broker directory: %w", err)
	}
	if err := os.WriteFile(f+".tmp", []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("injob: broker address: %w", err)
	}
	if err := os.Rename(f+".tmp", f); err != nil {
		return fmt.Errorf("injob: broker address: %w", err)
	}
	return nil
}

// servedURL is where the run's broker serves job's restart-th start; ""
// while it does not (yet), with waiting set while it waits for the store.
func servedURL(l rundir.Layout, job string, restart int) (url string, waiting bool) {
	data, err := os.ReadFile(servedFile(l, job, restart))
	if err != nil {
		return "", false
	}
	s := strings.TrimSpace(string(data))
	if s == brokerWaiting {
		return "", true
	}
	return s, false
}

// withJob runs f on the run's state file, opened for it alone; a job
// the file does not know (ErrNotFound) is no error.
func withJob(l rundir.Layout, f func(st *state.Store) error) error {
	if err := state.With(l.State(), f); !errors.Is(err, state.ErrNotFound) {
		return err
	}
	return nil
}

// DialServed connects a step's Pipeline to the embedded broker the job
// script serves for the run of l in job's restart-th start. It waits for
// the broker to say where it listens: up to wait for the broker to start,
// and for as long as the broker waits for the run's store (another job of
// the run still ending keeps it).
func DialServed(l rundir.Layout, job string, restart int, wait time.Duration, name, subscriber string, log *slog.Logger) (*rundir.Served, error) {
	deadline := time.Now().Add(wait)
	said := ""
	for {
		url, waiting := servedURL(l, job, restart)
		if url != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{url}, TokenFile: l.BrokerToken(), Name: name, Subscriber: subscriber, Logger: log})
			if err != nil {
				return nil, fmt.Errorf("job %s's %w at %s: %v", job, rundir.ErrBrokerUnreachable, url, err)
			}
			return &rundir.Served{NATS: n, URL: url}, nil
		}
		if waiting && said == "" {
			said = "waiting"
			log.Warn("another job of the run is running its visits: this job waits for it to end before running any (its broker holds the run's event store)")
		}
		if !waiting && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: no broker serves job %s (start %d) after %s: the job script starts it (dpsbatch broker --run-dir %s); see its log",
				rundir.ErrBrokerUnreachable, job, restart, wait, l.Dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
