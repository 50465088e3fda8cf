package harness

import "time"

// The built-in stage types register here, in one place. Their code is in
// stage_files.go (input, output, symlink), stage_exec.go,
// stage_worker.go and stage_event.go. Each is safe to call for several
// visits at once (Concurrent): the worker stage serves its program one
// request at a time itself, and the symlink stage replaces a link in one
// rename.
func init() {
	RegisterStage(Type{
		Name: "input",
		Doc:  "reads files named by path templates onto each slice clipboard",
		Settings: []Setting{
			{Key: "files", Kind: StringMap, Required: true, Doc: "clipboard key -> path template, such as raw: \"{input}/ccd{ccd}.dat\""},
			{Key: "format", Kind: String, Default: "auto", Doc: "persistence format: auto (by extension), raw, text, json or a registered one"},
			{Key: "optional", Kind: Bool, Default: false, Doc: "a missing file leaves its key unset instead of failing the slice"},
		},
		Concurrent: true,
		New:        newInput,
	})
	RegisterStage(Type{
		Name: "output",
		Doc:  "writes clipboard items to files named by path templates (atomically: a file is whole or absent)",
		Settings: []Setting{
			{Key: "files", Kind: StringMap, Required: true, Doc: "clipboard key -> path template, such as calexp: \"{output}/calexp-{ccd}.json\""},
			{Key: "format", Kind: String, Default: "auto", Doc: "persistence format: auto (by extension), raw, text, json or a registered one"},
		},
		Concurrent: true,
		New:        newOutput,
	})
	RegisterStage(Type{
		Name: "symlink",
		Doc:  "makes a symbolic link per slice, replacing an older link of the same name",
		Settings: []Setting{
			{Key: "from", Kind: String, Required: true, Doc: "path template of the link's target"},
			{Key: "to", Kind: String, Required: true, Doc: "path template of the link itself"},
		},
		Concurrent: true,
		New:        newSymlink,
	})
	RegisterStage(Type{
		Name: "exec",
		Doc:  "runs an external program per slice clipboard; a JSON object it prints on stdout (or writes to results_file) merges into the clipboard",
		Settings: []Setting{
			{Key: "command", Kind: Strings, Required: true, Doc: "program and arguments, each a template such as \"{input}/ccd{ccd}.dat\""},
			{Key: "timeout", Kind: Duration, Default: defaultExecTimeout, Doc: "time allowed per run; the program and its children are killed after it"},
			{Key: "dir", Kind: String, Doc: "working directory (path template); default: the run directory"},
			{Key: "env", Kind: StringMap, Doc: "extra environment variables, values are templates"},
			{Key: "results", Kind: String, Default: resultsStdout, Doc: "where the JSON object comes from: stdout (all of it, or else its last non-empty line; the lines before go to the log), none (stdout goes to the log) or file (results_file)"},
			{Key: "results_file", Kind: String, Doc: "path template of a JSON file the program writes its results to, read after it exits (implies results: file)"},
			{Key: "produces", Kind: Strings, Doc: "keys the program's JSON object holds (each must appear)"},
			{Key: "shared", Kind: Strings, Doc: "keys of produces that are shared (sent back to the Pipeline)"},
			{Key: "outputs", Kind: Strings, Doc: "path templates of files the program writes: each must exist after it exits; their sizes go on the clipboard under " + outputSizesKey},
			{Key: "ignore_stop_signals", Kind: Bool, Default: false, Doc: "start the program with SIGINT, SIGTERM and SIGUSR1 ignored (through /bin/sh), so a job's stop lets it finish; by default a stop signal ends it and its visit is interrupted"},
		},
		Concurrent: true,
		New:        newExec,
	})
	RegisterStage(Type{
		Name: "worker",
		Doc:  "asks a long-lived program, one per slice, about each data ID: a JSON line in on its stdin, a JSON line out (see README: writing a stage in Python)",
		Settings: []Setting{
			{Key: "command", Kind: Strings, Required: true, Doc: "program and arguments, started once per slice before the first visit (templates: the run's names and the locations)"},
			{Key: "inputs", Kind: Strings, Doc: "clipboard keys sent to the program with each data ID"},
			{Key: "produces", Kind: Strings, Doc: "keys the program answers in its outputs (each must appear)"},
			{Key: "shared", Kind: Strings, Doc: "keys of produces that are shared (sent back to the Pipeline)"},
			{Key: "params", Kind: Any, Doc: "a mapping sent to the program with each data ID, as params"},
			{Key: "timeout", Kind: Duration, Default: defaultExecTimeout, Doc: "time allowed per data ID; the program is then killed and started again for the next"},
			{Key: "grace", Kind: Duration, Default: 5 * time.Second, Doc: "time the program has to end once its stdin is closed at the end of the run, before it is killed"},
			{Key: "dir", Kind: String, Doc: "working directory (path template); default: the run directory"},
			{Key: "env", Kind: StringMap, Doc: "extra environment variables, values are templates"},
		},
		Concurrent: true,
		New:        newWorker,
	})
	RegisterStage(Type{
		Name: "event",
		Doc:  "publishes an event from the Pipeline after the stage's slices are done",
		Settings: []Setting{
			{Key: "topic", Kind: String, Required: true, Doc: "topic to publish on"},
			{Key: "properties", Kind: StringMap, Doc: "property -> template expanded on the Pipeline's clipboard"},
			{Key: "keys", Kind: Strings, Doc: "Pipeline clipboard keys copied into the event as they are (a shared key: its values by data ID; dataIds: each data ID's outcome)"},
		},
		Concurrent: true,
		New:        newEvent,
	})
	RegisterStage(Type{
		Name:       "noop",
		Doc:        "does nothing on every slice (for timing the harness itself)",
		Concurrent: true,
		New:        func(Settings) (Stage, error) { return noop{}, nil },
	})
}

type noop struct{}

func (noop) Process(*Context, *Clipboard) error { return nil }
