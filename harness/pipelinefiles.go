package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// settingText is one text of a stage's settings: a string setting, an
// item of a list setting, or a value of a map setting.
type settingText struct {
	key  string // the setting
	kind Kind
	sub  string // the map's key, for a StringMap
	path string // as messages name it: command[1], env.PYTHONPATH
	text string
}

// settingTexts lists the texts of the settings s of a stage of type t, in
// the order t declares them.
func settingTexts(t Type, s Settings) []settingText {
	var out []settingText
	for _, st := range t.Settings {
		if s.Raw(st.Key) == nil {
			continue
		}
		switch st.Kind {
		case String:
			out = append(out, settingText{key: st.Key, kind: String, path: st.Key, text: s.String(st.Key)})
		case Strings:
			for i, v := range s.Strings(st.Key) {
				out = append(out, settingText{key: st.Key, kind: Strings, path: fmt.Sprintf("%s[%d]", st.Key, i), text: v})
			}
		case StringMap:
			for _, p := range s.Pairs(st.Key) {
				out = append(out, settingText{key: st.Key, kind: StringMap, sub: p.Key, path: st.Key + "." + p.Key, text: p.Value})
			}
		}
	}
	return out
}

// pipelineDirRef is how a text names a file of the policy's folder.
const pipelineDirRef = "{pipelinedir}/"

// underPipelineDir is the part of text that names a file or folder of
// the policy's folder: what follows {pipelinedir}/ up to the first other
// {name} (the folder above it) or the end, cleaned ("" the folder
// itself). ok is false when text does not start with {pipelinedir}/, or
// climbs out of the folder (which a run's copy does not hold).
func underPipelineDir(text string) (rel string, ok bool) {
	rest, ok := strings.CutPrefix(text, pipelineDirRef)
	if !ok {
		return "", false
	}
	if i := strings.IndexByte(rest, '{'); i >= 0 {
		rest = rest[:strings.LastIndexByte(rest[:i], '/')+1]
	}
	rel = filepath.Clean(rest)
	if rel == "." {
		return "", true
	}
	return rel, filepath.IsLocal(rel)
}

// PipelineFiles lists the files and folders of the policy's folder that
// its locations and stage settings name under {pipelinedir} (a location
// or setting naming a file by {name}s, such as {pipelinedir}/bin/{tool},
// names the folder above them), relative to the folder, sorted, each
// once and none inside another listed. A batch run copies them into its
// run directory at submit, and {pipelinedir} names that copy in its jobs:
// editing the folder changes no run but on purpose (resume --refresh).
// "" in the list is the whole folder.
func (p *Policy) PipelineFiles() []string {
	var refs []string
	p.eachPipelineRef(func(_ int, _, text string) {
		if rel, ok := underPipelineDir(text); ok {
			refs = append(refs, rel)
		}
	})
	slices.Sort(refs)
	var out []string
	for _, r := range slices.Compact(refs) {
		if n := len(out); n > 0 && (out[n-1] == "" || strings.HasPrefix(r, out[n-1]+"/")) {
			continue // inside one listed
		}
		out = append(out, r)
	}
	return out
}

// eachPipelineRef calls f with every location and stage setting text
// that starts with {pipelinedir}/, with its line and path for messages.
func (p *Policy) eachPipelineRef(f func(line int, path, text string)) {
	for name, t := range p.Locations {
		if strings.HasPrefix(t.String(), pipelineDirRef) {
			f(p.locLines[name], "locations."+name, t.String())
		}
	}
	for _, sp := range p.Stages {
		t, err := LookupStage(sp.Type)
		if err != nil {
			continue
		}
		for _, tx := range settingTexts(t, sp.Settings) {
			if strings.HasPrefix(tx.text, pipelineDirRef) {
				f(sp.Line, sp.Path+".settings."+tx.path, tx.text)
			}
		}
	}
}

// checkPipelineRefs checks what the policy names under {pipelinedir}:
// nothing above the policy's folder (a run copies only what is inside
// it), and every program an exec or worker stage's command names by a
// fixed path there exists — a missing script is a validate error, not a
// failure of every data ID at run time.
func (p *Policy) checkPipelineRefs() conf.Errors {
	var errs conf.Errors
	p.eachPipelineRef(func(line int, path, text string) {
		rel, ok := underPipelineDir(text)
		switch {
		case !ok:
			errs = append(errs, p.errorAt(line, path, "%s climbs out of the pipeline's folder, which is all a run copies: name the file by an absolute path", text))
		case strings.HasPrefix(path, "stages[") && strings.Contains(path, ".settings.command[") && strings.Count(text, "{") == 1 && p.runsProgram(path):
			if _, err := os.Stat(filepath.Join(p.Dir, rel)); err != nil {
				errs = append(errs, p.errorAt(line, path, "%s: no such file in the pipeline's folder %s", text, p.Dir))
			}
		}
	})
	return errs
}

// runsProgram reports whether the stage a setting path names
// (stages[i].settings...) is an exec or worker stage.
func (p *Policy) runsProgram(path string) bool {
	for _, sp := range p.Stages {
		if strings.HasPrefix(path, sp.Path+".") {
			return sp.Type == "exec" || sp.Type == "worker"
		}
	}
	return false
}
