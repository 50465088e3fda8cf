package harness

// The Pipeline–Slice protocol.
//
// This is the order in which the ranks of a run talk over the
// communicator, written once; the message types are in messages.go (and
// exchangeMsg in exchange.go), the two loops that follow this order are
// pipeline.loop (with pipeline.visit) and rank.sliceLoop in loop.go, each
// step a function named in the Order list below (the Pipeline's first,
// then the Slice's). TestProtocolNamesEveryMessage fails when a message
// type has no paragraph below; TestLoopFunctionsShort fails when a
// function named here is not in the package, or a function of loop.go
// grows past 60 lines.
//
// Every collective is rooted at rank 0, the Pipeline; ranks 1..N are the
// Slices. Every rank makes the same collective calls in the same order
// (comm's rule), and both sides work that order out from the same policy:
// no message says how many stages a visit has or that a visit has ended.
// The Slices see only the parallel stages (those with Process); a serial
// stage costs no message. A stageMsg, sliceReport or exchangeMsg with
// nothing in it travels as zero bytes; visitMsg has a compact encoding
// when its properties are strings (encodeVisit), the start verdict is
// raw bytes, and everything else is gob. There is no protocol version:
// every rank runs the same binary.
//
// This is the protocol with one visit in flight (the policy's in_flight
// is 1, the default). With more, every message the Pipeline Bcasts after
// the assignment is wrapped in a flightMsg naming its visit, and the
// order of the collectives is the one the Pipeline chooses as visits
// become ready: "Visits in flight" below has what changes; everything
// else here holds for each visit.
//
// # Messages
//
// start verdict (raw bytes, only when the ranks load the policy from
// RunOptions.PolicyPath): every rank loads the policy (rank 0 also the
// visit file, and runs RunOptions.Rank0) and sends its
// error to rank 0 by Gather: empty when it is fine, else a kind byte ('I'
// bad input, 'E' other) and the text. Rank 0 combines them and Bcasts the
// verdict: empty, or the kind and each problem with the ranks that had
// it. Every rank then starts, or every rank returns an error (wrapping
// ErrInvalid for 'I') with the communicator still usable (agree, in
// dist.go).
//
// HostInfo (mapper.HostInfo, gob): every rank, the Pipeline included,
// sends its own, with Rank set, by Gather, once, before the first visit.
// The Pipeline passes the Slices' to the mapper and answers with an
// assignMsg.
//
// assignMsg: Scattered by the Pipeline once, right after the HostInfo
// gather: to each Slice its data IDs (mapper.Assign) and, when a stage
// exchanges over the mapper topology, its neighbour ranks
// (mapper.NeighbourMapper, checked symmetric). If the mapper failed, every Slice
// gets the error in Err instead and returns it, as the Pipeline does.
//
// visitMsg: Bcast by the Pipeline at the start of each visit, after it
// has admitted the trigger event and recorded VisitStarted: the visit ID,
// the trigger's properties and the data IDs an earlier attempt did (Done,
// from the VisitGate, empty when the policy redoes whole visits). Each
// Slice makes one clipboard per data ID not in Done, holding visitId,
// the other trigger properties, dataId and each key of the data ID, and
// waits for the visit's first stageMsg (or, with no parallel stage, the
// next visitMsg). With Begin set it does not wait: the first stage is
// parallel and its stageMsg would have been empty (no Preprocess, no
// event to wait for, one visit in flight), so the visitMsg stands for it
// (pipeline.canBegin). With Stop set it ends the Slices' loop instead: the Pipeline sends it once, whenever and however its
// visit loop ends (a failure before that loop, such as a subscription
// error, aborts the communicator instead).
//
// stageMsg: Bcast by the Pipeline at each parallel stage of a visit, after
// the stage's event wait and Preprocess: the properties of the events
// waited for since the last stageMsg, and the Pipeline's shared items
// changed since then (Clipboard.PutShared). A Slice puts the properties,
// then the shared items, on every clipboard of its queue and runs
// Process. With Skip set (the visit has failed on the Pipeline) it
// carries nothing else, and both sides leave the visit at once: no
// exchange, no report, no message for the visit's later stages.
//
// exchangeMsg: sent by a Slice to each of its neighbours by Exchange,
// after Process of a stage with an exchange section: the exchanged keys'
// values by data ID. The receiver puts them on every clipboard that came
// out of the stage as "key.neighbours" (exchange.go has the rules). Every
// rank calls Exchange once for such a stage, the Pipeline with nothing to
// send or receive, so sends and receives pair up.
//
// sliceReport: Gathered from every Slice after each parallel stage that
// was not skipped (after the exchange, if any): its failures, the
// shared items its clipboards set in the stage, and the declared files
// its data IDs made in it. The Pipeline reads the
// reports in rank order, records each failure (Recorder.SliceFailed),
// keeps the files for the visit's end (VisitResult.Outputs),
// puts each gathered shared key on its clipboard as a map from data ID
// (mapper.DataID.String) to value, so a data ID that failed is missing
// from it, and each key the stage declares shared that no data ID sent as
// an empty map; lists failures and shared items in Context.Outcomes, and
// runs Postprocess (with the KeyDataIDs item, each data ID's outcome so
// far, put anew before it, as before each Preprocess). It answers nothing: the next message is the next stageMsg,
// or the next visitMsg.
//
// failureMsg: one entry of a sliceReport: a clipboard whose Process
// failed (error or panic), or whose exchanged value could not be encoded;
// the data ID and the message (an empty data ID when the Slice's report
// itself could not be encoded). Stopped says the clipboard's program was
// ended by a stop signal the Slice also received (ErrKilled, StopSignals,
// stopGrace): the Pipeline does not record it as a slice failure, and the
// visit ends interrupted instead of failed. Capture is the failed call's
// freeze-dried input the Slice wrote (freezedry.go), which the Pipeline
// records with the failure.
//
// sharedMsg: one entry of a sliceReport: the shared items one clipboard
// set in the stage (Clipboard.takeShared), with its data ID.
//
// outputMsg: one entry of a sliceReport: a file a data ID's stage declared
// it writes and made in the stage (an exec stage's outputs, which it
// tells Context.madeOutputs after checking them), with its size. Only a
// call that succeeded reports them. The Pipeline keeps each data ID's
// files across the visit's stages, a later size replacing an earlier
// one, so a data ID that fails in a later stage keeps what it made
// before.
//
// flightMsg (visits in flight only; its own encoding, encodeFlight):
// Bcast by the Pipeline's driver for every step of every visit, and for
// the Stop: the step, the visit's ID and, as Body, the message one visit
// in flight would send for that step (a visitMsg to start, a stageMsg for
// a parallel stage), encoded as then. A Slice does what the step says for
// that visit (rank.flightLoop). A poll is followed by a Gather of each
// Slice's answer: the IDs of the visits whose running stage it has
// processed (encodeIDs; raw bytes), sent once it has one or after
// pollWait. A collect is followed by the stage's Exchange if it
// exchanges, and the Gather of the visit's sliceReport.
//
// flightStep: what a flightMsg announces: start (step 6), stage (steps 8
// and 9), poll, collect (steps 10 and 11) or stop (step 14).
//
// # Order
//
//  1. Start (ranks given a loaded RunOptions.Policy begin at step 2): the
//     start verdict. All ranks go on, or all return.
//  2. Each rank builds its stages and calls Initialize on them in policy
//     order (no message). A failure ends that rank's Run, which aborts
//     the communicator (step 16). (rank.initialize.)
//  3. Host info and assignment: Gather of HostInfo, Scatter of assignMsg.
//     Slices of a ring exchange work out their neighbours themselves.
//     (rank.assign; on a Slice then rank.setNeighbours.)
//  4. The Pipeline subscribes to the trigger topic, the topics stages
//     wait for and the control topic, and starts its heartbeat if asked;
//     the Slices wait for a visitMsg. (rank.pipelineLoop,
//     pipeline.subscribe.)
//  5. Per visit, trigger: the Pipeline reads the next trigger event. An
//     event not selected, of an unknown kind, malformed or with an unsafe
//     visit ID is passed over; no-more-data ends the loop (step 14); a
//     shutdown event stops it; the VisitGate may skip the visit or
//     stop the loop here, before the visit is recorded.
//     (pipeline.nextVisit, pipeline.triggerVisit, pipeline.admit.)
//  6. VisitStarted is recorded, then visitMsg is Bcast. The Pipeline makes
//     its own clipboard (visitId and the trigger's properties).
//     (pipeline.startVisit; rank.awaitVisit, rank.visitClipboards.) With
//     Begin, steps 7 and 8 of the first stage are done: both sides go
//     on at step 9 (Slices) and 10 (Pipeline). (pipeline.canBegin.)
//  7. Per stage, in policy order, on the Pipeline: if the stage has an
//     event section, wait for its event (up to its timeout; events for
//     other visits are kept for them); its properties go on the
//     Pipeline's clipboard and wait for the next stageMsg. Then
//     Preprocess. A failure of either fails the visit on the Pipeline.
//     (pipeline.runStage: pipeline.waitStageEvent, pipeline.preprocess.)
//  8. If the stage is parallel: Bcast stageMsg (Skip if the visit has
//     failed on the Pipeline, by now or at an earlier stage; then both
//     sides go to step 13). (pipeline.broadcastStage; rank.sliceStage:
//     rank.receiveStage.)
//  9. On each Slice: Process on each clipboard of its queue, in order. A
//     failed clipboard becomes a failureMsg and leaves the queue; the
//     others, or what Process emitted in their place, make the next
//     stage's queue. (rank.process.)
// 10. If the stage exchanges: every rank calls Exchange (exchangeMsg).
//     (pipeline.pipelineExchange; rank.sliceExchange.)
// 11. Gather of sliceReport; the Pipeline records the failures, puts
//     the shared items on its clipboard and keeps the declared files made
//     (outputMsg) for the visit's end. (pipeline.gather,
//     pipeline.recordFailures, visitRun.addOutputs; rank.report.)
// 12. Every stage, serial or parallel, on the Pipeline, unless the visit
//     has failed there: Postprocess, with Context.Outcomes; then
//     StageDone (the stage's time, its event wait and the gather
//     included). A Postprocess failure fails the visit on the Pipeline.
//     (pipeline.postprocess.) With one visit in flight, when the stage
//     has no Postprocess and the next is parallel with no event and no
//     Preprocess, steps 7 and 8 of the next stage come first and only
//     StageDone is left here: the next stageMsg is the same either way,
//     and the Slices do not wait for the Recorder. (pipeline.sendAhead.)
//     A Recorder error between stages ends the visit as interrupted; if
//     the Slices then wait for a stageMsg, they get Skip first, so that
//     step 14's Stop finds them waiting for a visitMsg.
//     (pipeline.releaseSlices.)
// 13. Visit end (no message). The Slices drop the visit's clipboards after
//     its last parallel stage (or a Skip) and wait for the next visitMsg;
//     with one visit in flight, both sides empty the clipboards they made
//     for the visit and use them for the next (Clipboard.reset).
//     The Pipeline decides the outcome, first match wins: interrupted (the
//     run's context was cancelled), interrupted (a Stopped failure),
//     failed (a failure on the Pipeline), failed (the policy's failure
//     rule over the failed data IDs), done; and each data ID's it ran,
//     whatever the visit's: failed, interrupted (a Stopped one, or with
//     the visit), skipped (the visit failed on the Pipeline), done; and
//     records VisitEnded with both. (pipeline.endVisit, pipeline.outcome,
//     pipeline.dataIDOutcomes; on a Slice, the end of
//     rank.sliceLoop's visit.)
// 14. Stop: when the Pipeline's loop ends (no-more-data; a shutdown event,
//     RunOptions.Stop or the budget, heard at the next visit boundary; an
//     interrupt; an error), it Bcasts visitMsg with Stop, once.
//     (pipeline.loop, pipeline.bcastStop; rank.awaitVisit.)
// 15. Shutdown (no message): every rank calls Shutdown on the stages it
//     initialized, in reverse order, and Run returns. (rank.shutdown.)
// 16. Abort: a rank whose Run ends with an error other than comm.ErrAborted
//     or ErrInterrupted calls Comm.Abort after step 15; every other rank's
//     pending or next collective then fails with comm.ErrAborted.
//
// # Visits in flight
//
// With the policy's in_flight K above 1, the Pipeline starts a visit
// while fewer than K are in their stages; each visit has its own
// clipboards and its own progression through the stages above, and a
// Slice runs the stage work of different visits at once. MPI's rule
// stays: every rank makes its collective calls in one order, from one
// goroutine. The design:
//
//  1. On the Pipeline one goroutine, the driver (pipeline.flyLoop,
//     pipeline.drive), makes every collective call. A feeder goroutine
//     (pipeline.feed) reads the trigger topic as in step 5 whenever the
//     driver gives it leave (fewer than K visits in flight), and waits
//     for a visit of the same ID still in flight to end first: visits
//     in flight have distinct IDs. The driver starts the visit (step 6,
//     pipeline.launch) and runs its stages on a goroutine of the visit's
//     own (pipeline.runVisit, as with one visit in flight), which asks
//     the driver for its stageMsg Bcast (pipeline.serveStage) and its
//     collect (pipeline.serveCollect) instead of calling the communicator.
//  2. Every Bcast is a flightMsg that names its visit and step, so the
//     Slices follow whatever order the driver chose: each rank calls the
//     same collectives in the same order, on one goroutine (the Slice's
//     loop, rank.flightLoop). The order itself depends on when events,
//     triggers and stage work complete, not on a fixed schedule: MPI's
//     rule asks for one order on every rank, which the flightMsg gives,
//     not for the same order in every run, which a fixed schedule would
//     buy by making every visit wait for the slowest event.
//  3. A collect must not wait for a Slice's Process: the driver would
//     be stuck in its Gather while other visits wait for it. So while
//     visits wait for a collect and nobody asks for anything else, the
//     driver polls (pipeline.poll): each Slice answers with the visits
//     whose running stage it has processed, at once if it has one, else
//     when one is or after pollWait (rank.answerPoll). The driver then
//     collects, oldest first, the visits every Slice named
//     (pipeline.collectReady); each such collect returns at once.
//     Starts and stageMsgs go before polls: the driver waits at most
//     pollWait for the Slices before it serves the visits again.
//  4. On a Slice, a stage step starts Process over the visit's queue on a
//     goroutine of its own and the loop goes on (rank.startStage); a
//     collect, of a stage it has processed, exchanges and reports on the
//     loop's goroutine (rank.collectStage). A start makes the visit's
//     clipboards (rank.openVisit); the visit is left after its last
//     parallel stage's collect, or a Skip. The Stop ends the loop once
//     no Process runs.
//  5. A stage whose type declares Type.Concurrent is called for several
//     visits at once; one that does not is called for one visit at a
//     time on each rank (rank.exclusive: Process over a visit's queue on
//     a Slice, Preprocess and Postprocess on the Pipeline). Every
//     built-in stage declares it. Each call gets a Context of its own.
//  6. Events a stage waits for are read by one goroutine per topic
//     (pipeline.readTopic), only while a stage waits there, as with one
//     visit in flight (what nobody waits for stays with the broker, for
//     the job that runs its visit), which files each under the visit it names
//     (at most maxEarly kept in all; a visit's are forgotten at its end);
//     a stage takes its visit's oldest, else the oldest naming no visit,
//     that its select and properties accept (pipeline.takeEvent).
//  7. The Recorder hears one call at a time (lockedRecorder), from the
//     driver, the feeder and the visit goroutines; each visit's calls
//     come in the order Recorder gives.
//  8. A stop (a shutdown event, RunOptions.Stop, the VisitGate's budget)
//     ends the feeder: no visit starts after it, and the visits in
//     flight run to their end; then the Stop. An interrupt ends every
//     visit in flight interrupted. An error that ends the run (a
//     communicator or Recorder error) is the answer to every later ask:
//     those visits are recorded interrupted (cutShort), none starts.
//
// What holds with K above 1: within a visit, everything above (its
// stages in policy order, VisitStarted before its first message and
// VisitEnded after its last, its slice failures before its
// Postprocess); visits start in the order of their triggers, at most K
// at once; no visit starts after a stop; every rank sees the same order
// of collectives; a stage not declared concurrent runs for one visit at
// a time on each rank; the Stop comes after every visit in flight has
// ended; resume reruns what is not done, as the state file says.
//
// What does not: visits end (VisitEnded, the summary's order) in the
// order their work finishes, not the order they started; the events
// stages publish interleave across visits (each visit's in its own
// order); a link a symlink stage replaces each visit (a "latest" link)
// names the visit whose stage ran last, not always the newest; the
// heartbeat names the oldest visit in flight; on a Slice, the Process
// calls of different visits interleave.
//
// # Failures
//
// A Slice's Process fails (error or panic): only that clipboard, its data
// ID for this visit, fails. It is reported, recorded with stage, slice
// and data ID, and leaves the queue; the Slice's other clipboards and the
// other Slices carry on, and the Pipeline's failure rule (visitRule)
// decides whether the visit fails.
//
// A failure on the Pipeline (an event wait timing out, Preprocess or
// Postprocess failing): the visit fails; the next parallel stage's
// stageMsg has Skip, and nothing more of the visit runs on either side.
//
// A stop signal noted by a Slice: a Process error matching ErrKilled,
// with a stop signal received within stopGrace, is reported Stopped and
// the visit ends interrupted, to be run again. The report does not stop
// the run: rank 0 hears the same signal (Slurm signals every task) and
// stops at the visit boundary.
//
// A dead or lost Slice: the Pipeline's next collective fails (tcp notices
// a dead process at once, a hung one within its timeout; mpi aborts the
// step). The visit is recorded interrupted (cutShort), and the error ends
// Run, which aborts the communicator if it has not aborted already.
//
// An interrupt (the run's context cancelled): the Pipeline's waits and
// stage calls see the cancelled context (the Slices' too where they share
// it, as with RunOptions.Ranks local), the visit is recorded interrupted, the loop ends
// with the Stop message, and Run returns ErrInterrupted without aborting.
//
// A Recorder error ends the run: progress that cannot be recorded must not
// be done. The visit in flight is recorded interrupted if it can be.
//
// # Safety rules
//
//   - Only rank 0 records progress, reads and publishes events; Slices
//     never touch the Recorder or the broker.
//   - VisitStarted is recorded before the visit's first message; a slice
//     failure is recorded before Postprocess sees it; VisitEnded after the
//     visit's last message.
//   - A failing clipboard fails only its data ID; only the Pipeline decides
//     a visit's outcome.
//   - A visit cut short by the job's end (a stop signal, an interrupt, a
//     dead Slice) is interrupted, never failed.
//   - Every rank calls Exchange for an exchanging stage, with or without
//     data; neighbour lists are symmetric.
//   - No rank waits forever: a fatal error on any rank aborts the
//     communicator.
//   - A visit ID from an event is checked (CheckVisitID) before it reaches
//     a message, a path or a command.
//
// # Where the code does something one might not expect
//
//   - Nothing checks that every rank loaded the same policy: Run loads
//     the file on each rank, and a different parallel-stage count would
//     desynchronise the loops (tcp reports collectives called in different
//     orders; local and mpi may not).
//   - The properties of an event a serial stage waited for reach the
//     Slices with the next parallel stage's stageMsg, not before; with no
//     parallel stage after it, never.
//   - A no-more-data event on a stage's wait topic is passed over; only the
//     trigger topic's ends the run. A shutdown event there is heeded.
//   - The Stop message is sent from a deferred call, also when the loop
//     ends on an error mid-visit. Slices then waiting for a stageMsg fail
//     to decode it and abort; the Pipeline aborts anyway.
//   - A shared item the Pipeline cannot encode ends the run (the visit is
//     recorded interrupted), while a Slice whose report cannot be encoded
//     drops the stage's shared items and reports one failure with an empty
//     data ID; its clipboards carry on.
//   - Put keeps a key's shared mark: gathered maps put on a key the
//     Pipeline had marked shared are broadcast back at the next parallel
//     stage, and a value a Slice receives for a key it marked shared goes
//     back in its next report.
//   - A Process error caused by an interrupt is recorded as a slice failure
//     like any other, though the visit ends interrupted.
//   - A rank that fails runs its Shutdowns before it aborts the
//     communicator, so the other ranks wait for them.
//   - Nothing watches the communicator while the Pipeline waits for a
//     trigger: a Slice that dies between visits is noticed when the next
//     visit starts (its visitMsg Bcast fails), so a run that listens for
//     triggers can sit idle with a dead Slice until one arrives.
