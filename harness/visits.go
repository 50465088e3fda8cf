package harness

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// Visit is one line of a visit file: its ID and its properties, which the
// trigger event carries onto every clipboard.
type Visit struct {
	ID    string
	Props map[string]any // without visitId
	Line  int
}

// ReadVisits reads a visit file: CSV with a header row, or JSON lines (one
// object per line), chosen by extension (.csv; .jsonl, .ndjson, .json) or,
// failing that, by the first character. A visitId column or key is
// required; a missing, empty or repeated visit ID is an error naming the
// line. Every problem is reported (a conf.Errors).
func ReadVisits(path string) ([]Visit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: visits: %v", ErrInvalid, err)
	}
	return ParseVisits(path, data)
}

// ParseVisits is ReadVisits for a file already in memory.
func ParseVisits(path string, data []byte) ([]Visit, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a BOM, as spreadsheets write
	var (
		vs   []Visit
		errs conf.Errors
	)
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".jsonl" || ext == ".ndjson" || ext == ".json":
		vs, errs = parseJSONLines(path, data)
	case ext == ".csv":
		vs, errs = parseCSV(path, data)
	case strings.HasPrefix(strings.TrimSpace(string(data)), "{"):
		vs, errs = parseJSONLines(path, data)
	default:
		vs, errs = parseCSV(path, data)
	}
	seen := map[string]int{}
	for _, v := range vs {
		if v.ID == "" {
			continue
		}
		if first, dup := seen[v.ID]; dup {
			errs = append(errs, &conf.Error{File: path, Line: v.Line, Msg: fmt.Sprintf("visit %q repeats line %d", v.ID, first)})
			continue
		}
		seen[v.ID] = v.Line
	}
	if len(vs) == 0 && len(errs) == 0 {
		errs = append(errs, &conf.Error{File: path, Msg: "no visits"})
	}
	if err := errs.Err(); err != nil {
		errs.Sort()
		return nil, errs
	}
	return vs, nil
}

func parseCSV(path string, data []byte) ([]Visit, conf.Errors) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, conf.Errors{{File: path, Msg: "no visits (the file is empty)"}}
		}
		return nil, conf.Errors{csvError(path, err)}
	}
	col := -1
	for i, h := range header {
		header[i] = strings.TrimSpace(h)
		if header[i] == events.PropVisit {
			col = i
		}
	}
	line, _ := r.FieldPos(0)
	if col < 0 {
		return nil, conf.Errors{{File: path, Line: line, Msg: fmt.Sprintf("the header has no %s column (it has: %s)", events.PropVisit, strings.Join(header, ", "))}}
	}
	var (
		vs   []Visit
		errs conf.Errors
	)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, csvError(path, err))
			if len(errs) > 20 {
				break
			}
			continue
		}
		line, _ := r.FieldPos(0)
		v := Visit{ID: strings.TrimSpace(rec[col]), Props: map[string]any{}, Line: line}
		if v.ID == "" {
			errs = append(errs, &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: "is empty"})
			continue
		}
		for i, f := range rec {
			if i != col {
				v.Props[header[i]] = f
			}
		}
		vs = append(vs, v)
	}
	return vs, errs
}

func csvError(path string, err error) *conf.Error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &conf.Error{File: path, Line: pe.Line, Msg: pe.Err.Error()}
	}
	return &conf.Error{File: path, Msg: err.Error()}
}

func parseJSONLines(path string, data []byte) ([]Visit, conf.Errors) {
	var (
		vs   []Visit
		errs conf.Errors
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		var obj map[string]any
		err := dec.Decode(&obj)
		if err == nil && dec.More() {
			err = errors.New("text follows the object (one visit per line)")
		}
		if err != nil || obj == nil {
			msg := "expected a JSON object"
			if err != nil {
				msg += ": " + err.Error()
			}
			errs = append(errs, &conf.Error{File: path, Line: line, Msg: msg})
			continue
		}
		raw, ok := obj[events.PropVisit]
		delete(obj, events.PropVisit)
		id := ""
		switch x := raw.(type) {
		case string:
			id = x
		case json.Number:
			id = x.String()
		case nil:
			if !ok {
				errs = append(errs, &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: "is missing"})
				continue
			}
		default:
			errs = append(errs, &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: fmt.Sprintf("must be a string or number, got %v", x)})
			continue
		}
		if strings.TrimSpace(id) == "" {
			errs = append(errs, &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: "is empty"})
			continue
		}
		for k, v := range obj {
			obj[k] = plainJSON(v)
		}
		vs = append(vs, Visit{ID: id, Props: obj, Line: line})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &conf.Error{File: path, Line: line + 1, Msg: err.Error()})
	}
	return vs, errs
}

// CheckVisits reports every visit that lacks a property the policy's
// trigger declares (events.trigger.properties) or has one of the wrong
// type. A text value that reads as the declared type (every CSV cell is
// text) is replaced by the value it reads as.
func CheckVisits(p *Policy, path string, vs []Visit) error {
	var errs conf.Errors
	for _, v := range vs {
		for _, pr := range p.Trigger.problems(v.Props, -1) {
			msg := fmt.Sprintf("visit %q has no property %q, which %s declares in events.trigger.properties", v.ID, pr.key, p.File)
			if pr.want != PropAny {
				msg = fmt.Sprintf("visit %q: %s, as %s declares in events.trigger.properties", v.ID, pr, p.File)
			}
			errs = append(errs, &conf.Error{File: path, Line: v.Line, Msg: msg})
		}
		if len(errs) > 50 {
			break
		}
	}
	return errs.Err()
}

// Event returns the trigger event that starts the visit.
func (v Visit) Event(topic, runID string) events.Event {
	props := make(map[string]any, len(v.Props)+1)
	for k, x := range v.Props {
		props[k] = x
	}
	props[events.PropVisit] = v.ID
	return events.Event{Topic: topic, RunID: runID, Kind: events.KindData, Properties: props}
}
