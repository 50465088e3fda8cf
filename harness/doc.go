// Package harness is the pipeline harness: it runs a pipeline's stages
// over many data IDs at once, one visit at a time. A run is a Pipeline on
// rank 0 and Slices on ranks 1..N of a communicator; events start visits
// and stop the run, and a mapper decides which data IDs each Slice owns.
//
// The nouns, and how they relate:
//
//   - A Policy is a pipeline's policy file, loaded and validated by Load
//     (LoadOptions name its pipeline and directory first): its stages in
//     order, the mapper, the trigger (an EventFilter), the locations and
//     the failure rule.
//   - A Stage is an instance of a registered stage Type (RegisterStage;
//     the built-ins register in builtin.go). It does its work through
//     optional parts: Processor (Process, on every Slice, once per
//     clipboard), Preprocessor and Postprocessor (on the Pipeline, before
//     and after the Slices), Initializer and Shutdowner (once per rank).
//     A stage with Process is parallel; one without is serial and costs
//     no communication. Each part's doc says what happens without it.
//     The exec stage runs a program per clipboard; the worker stage keeps
//     one program per Slice for the run and asks it about each data ID,
//     one JSON line in and one out: stage_worker.go writes that protocol
//     down, for workers in any language (python/dpsworker.py is one).
//   - A Clipboard holds the named values stages pass on during a visit:
//     one on the Pipeline, one per data ID on each Slice. Items put with
//     PutShared travel between the Pipeline and the Slices at each
//     parallel stage; a stage's exchange section hands items straight to
//     neighbour Slices (exchange.go).
//   - A Context is handed to every stage call: the run, visit, stage,
//     slice and data ID, path patterns (Pattern) and locations, a logger,
//     Emit, and Publish (the Pipeline only).
//   - A visit is one trigger event's worth of work: a Visit is a line of
//     a visit file, published as a trigger event by Run. The
//     Pipeline reads the trigger topic; a stage may wait for an event of
//     its own; a no-more-data event ends the run once the visit in flight
//     is done, and a shutdown event (or RunOptions.Stop, or a VisitGate's
//     answer) stops it at the next visit boundary.
//   - A mapper.DataMapper assigns the data IDs to the Slices once, before
//     the first visit, from every rank's mapper.HostInfo.
//   - A Recorder hears the Pipeline's progress (visit started, stage done,
//     slice failed, visit ended, with a VisitOutcome); its optional
//     extras hear what became of events (EventRecorder) and admit visits
//     and budget time (VisitGate). Summary is the in-memory one.
//   - The communicators (harness/comm: local, tcp, mpi) move the bytes;
//     messages.go says what the bytes are and protocol.go in what order
//     they travel.
//
// Running one: Run, with RunOptions. Its Ranks choose where the ranks
// are: all in this process as goroutines (CommLocal, `dpsbatch local` and
// `dpsbatch run --comm local`), or this process as one rank of a tcp or
// mpi communicator (`dpsbatch run` under srun or mpirun), or one rank of
// a communicator the caller opened (RunOptions.Comm: bench/mpistages,
// tests). The options also say what runs: a loaded Policy and its Visits,
// or the files every rank loads (and then agrees on before starting).
// Its error says how the run ended; ExitCode turns it into the exit status.
//
// What it never does: it never imports the batch side (jobs, scheduler,
// state, site, templates); it never writes a run's state file itself,
// and only rank 0 calls the Recorder that does; it never talks to Slurm
// (the job script and srun start the ranks, and harness only reads the
// task environment to join them). Slices never talk to the event broker.
package harness
