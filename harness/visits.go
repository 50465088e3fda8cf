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
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/repeats"
)

// Visit is one line of a visit file: its ID and its properties, which the
// trigger event carries onto every clipboard.
type Visit struct {
	ID    string
	Props map[string]any // without visitId; nil when the visit has no other property
	Line  int
}

// ReadVisits reads a new visit file: CSV with a header row, or JSON lines
// (one object per line), chosen by extension (.csv; .jsonl, .ndjson,
// .json) or, failing that, by the first character. In both formats a
// line whose first non-blank character is '#' is a comment and blank
// lines are ignored (in CSV, not inside a quoted field). The file must be
// UTF-8. A visitId column or key is required, and a header column or an
// object key may appear only once. White space around a visit ID is not
// part of it; a missing, empty, repeated or unusable visit ID (see
// CheckVisitID) is an error naming the line. Every problem is reported (a
// conf.Errors).
func ReadVisits(path string) ([]Visit, error) {
	l, err := ReadVisitList(path)
	if err != nil {
		return nil, err
	}
	return l.Visits, nil
}

// VisitList is a visit file as read: its visits and how many comment
// lines it has.
type VisitList struct {
	Visits   []Visit
	Comments int
}

// ReadVisitList is ReadVisits, also counting the file's comment lines.
func ReadVisitList(path string) (*VisitList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: visits: %v", ErrInvalid, err)
	}
	return parseVisits(path, data, newFileRules)
}

// parseNewVisits is ReadVisits for a file already in memory.
func parseNewVisits(path string, data []byte) ([]Visit, error) {
	l, err := parseVisits(path, data, newFileRules)
	if err != nil {
		return nil, err
	}
	return l.Visits, nil
}

// ReadRunVisits reads the visit list of a run that exists and indexes it
// by the visit IDs the run's state file may name. The list was checked
// when the run was created, by the rules of that time: it is read without
// refusing what new visit files may not have (not UTF-8, unusable visit
// IDs, repeated columns and keys), and under both the comment and white
// space rules of today (ReadVisits) and those before them (only a '#' in
// a CSV line's first column began a comment; a JSON line's visit ID kept
// its white space), so that runs created before and since both resume.
// Visits arriving at the Pipeline are still checked (CheckVisitID).
func ReadRunVisits(path string) (map[string]Visit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: visits: %v", ErrInvalid, err)
	}
	now, errNow := parseVisits(path, data, runFileRules)
	before, errBefore := parseVisits(path, data, oldFileRules)
	if errNow != nil && errBefore != nil {
		return nil, errNow
	}
	byID := map[string]Visit{}
	for _, l := range []*VisitList{now, before} {
		if l == nil {
			continue
		}
		for _, v := range l.Visits {
			if _, taken := byID[v.ID]; !taken {
				byID[v.ID] = v
			}
		}
	}
	return byID, nil
}

// CheckVisitID says why id cannot be a visit ID, or returns nil: visit IDs
// go into paths ({visit} in a location) and command lines, so they follow
// conf.CheckElement (no '/', not "." or "..", no control characters such
// as NUL, no leading '-'). Visit files are checked when they are read;
// visits arriving as trigger events are checked by the Pipeline, which
// drops and counts one it refuses as malformed.
func CheckVisitID(id string) error {
	if err := conf.CheckElement(id); err != nil {
		return fmt.Errorf("visit ID %q %w", id, err)
	}
	return nil
}

// readRules are the rules a visit file is read by.
type readRules struct {
	comments bool // a comment is a line whose first non-blank character is '#', not only a '#' in the first column (CSV)
	trim     bool // white space around a visit ID is not part of it (JSON lines; CSV always trimmed)
	refuse   bool // refuse lines not UTF-8, unusable visit IDs, repeated columns and keys
}

var (
	newFileRules = readRules{comments: true, trim: true, refuse: true}
	runFileRules = readRules{comments: true, trim: true} // a run's list, read back by today's rules
	oldFileRules = readRules{}                           // by the rules before them
)

// parseVisits parses a visit file by rules.
func parseVisits(path string, data []byte, rules readRules) (*VisitList, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a BOM, as spreadsheets write
	var (
		l    VisitList
		errs conf.Errors
	)
	if rules.refuse {
		if errs = checkUTF8(path, data); len(errs) > 0 {
			return nil, errs
		}
	}
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".jsonl" || ext == ".ndjson" || ext == ".json":
		l, errs = parseJSONLines(path, data, rules)
	case ext == ".csv":
		l, errs = parseCSV(path, data, rules)
	case strings.HasPrefix(strings.TrimSpace(string(data)), "{"):
		l, errs = parseJSONLines(path, data, rules)
	default:
		l, errs = parseCSV(path, data, rules)
	}
	vs := l.Visits
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	for _, r := range repeats.All(len(ids), repeats.Strings(ids), func(i int) string { return ids[i] }) {
		errs = append(errs, &conf.Error{File: path, Line: vs[r.Later].Line, Msg: fmt.Sprintf("visit %q repeats line %d", ids[r.Later], vs[r.First].Line)})
	}
	if len(vs) == 0 && len(errs) == 0 {
		errs = append(errs, &conf.Error{File: path, Msg: "no visits"})
	}
	if err := errs.Err(); err != nil {
		errs.Sort()
		return nil, errs
	}
	return &l, nil
}

// checkUTF8 reports the lines that are not valid UTF-8 (such as a file
// saved as Latin-1), the first few of them.
func checkUTF8(path string, data []byte) conf.Errors {
	if utf8.Valid(data) {
		return nil
	}
	var errs conf.Errors
	for i, line := range bytes.Split(data, []byte("\n")) {
		if utf8.Valid(line) {
			continue
		}
		if len(errs) == 5 {
			errs = append(errs, &conf.Error{File: path, Msg: "more lines are not valid UTF-8"})
			break
		}
		errs = append(errs, &conf.Error{File: path, Line: i + 1,
			Msg: "not valid UTF-8 (a visit file must be UTF-8: convert a Latin-1 file with iconv -f latin1 -t utf-8)"})
	}
	return errs
}

// visitID checks the visit ID raw of the visit on line: by rules.trim,
// white space around it is dropped; by rules.refuse, it must be one the
// Pipeline takes (CheckVisitID).
func visitID(path string, line int, raw string, rules readRules) (string, *conf.Error) {
	id := raw
	if rules.trim {
		id = strings.TrimSpace(raw)
	}
	if !rules.refuse {
		return id, nil
	}
	if id == "" {
		return "", &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: "is empty"}
	}
	if err := CheckVisitID(id); err != nil {
		return "", &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: err.Error()}
	}
	return id, nil
}

func parseCSV(path string, data []byte, rules readRules) (VisitList, conf.Errors) {
	var l VisitList
	comment := '#' // only a '#' in the line's first column
	if rules.comments {
		data, l.Comments = blankComments(data)
		comment = 0
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = comment
	r.TrimLeadingSpace = true
	r.ReuseRecord = true // a visit keeps strings of a record, never the record
	// At most a visit a line: one allocation for a million visits.
	l.Visits = make([]Visit, 0, bytes.Count(data, []byte{'\n'})+1)
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return l, conf.Errors{{File: path, Msg: "no visits (the file is empty)"}}
		}
		return l, conf.Errors{csvError(path, err)}
	}
	header = slices.Clone(header) // the reader reuses its record
	line, _ := r.FieldPos(0)
	col := -1
	named := map[string]int{}
	for i, h := range header {
		header[i] = strings.TrimSpace(h)
		if j, dup := named[header[i]]; dup && rules.refuse {
			return l, conf.Errors{{File: path, Line: line, Msg: fmt.Sprintf("the header names column %d %q, like column %d: each column must have its own name", i+1, header[i], j+1)}}
		}
		named[header[i]] = i
		if header[i] == events.PropVisit {
			col = i
		}
	}
	if col < 0 {
		return l, conf.Errors{{File: path, Line: line, Msg: fmt.Sprintf("the header has no %s column (it has: %s)", events.PropVisit, strings.Join(header, ", "))}}
	}
	var errs conf.Errors
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
		v := Visit{ID: strings.TrimSpace(rec[col]), Line: line}
		if v.ID == "" {
			errs = append(errs, &conf.Error{File: path, Line: line, Path: events.PropVisit, Msg: "is empty"})
			continue
		}
		if _, e := visitID(path, line, v.ID, rules); e != nil {
			errs = append(errs, e)
			continue
		}
		if len(rec) > 1 {
			v.Props = make(map[string]any, len(rec)-1)
			for i, f := range rec {
				if i != col {
					v.Props[header[i]] = f
				}
			}
		}
		l.Visits = append(l.Visits, v)
	}
	return l, errs
}

// blankComments empties the comment lines of CSV data (those whose first
// non-blank character is '#', outside a quoted field) and the lines of
// white space only, keeping every line's number, and counts the comments.
// A quoted field is open after a line when the quotes so far are odd in
// number (a quote inside one is written twice).
func blankComments(data []byte) ([]byte, int) {
	var (
		out      = make([]byte, 0, len(data))
		comments int
		inQuote  bool
	)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		body := bytes.TrimRight(line, "\r\n")
		if !inQuote {
			t := bytes.TrimSpace(body)
			if len(t) == 0 || t[0] == '#' {
				if len(t) > 0 {
					comments++
				}
				out = append(out, line[len(body):]...) // the line's end only
				continue
			}
		}
		if bytes.Count(body, []byte{'"'})%2 == 1 {
			inQuote = !inQuote
		}
		out = append(out, line...)
	}
	return out, comments
}

// csvError places a CSV syntax error at the line where its record starts:
// a quote left open runs on to the end of the file, where the reader
// notices it.
func csvError(path string, err error) *conf.Error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return &conf.Error{File: path, Msg: err.Error()}
	}
	if pe.StartLine > 0 && pe.StartLine != pe.Line {
		return &conf.Error{File: path, Line: pe.StartLine,
			Msg: fmt.Sprintf("%v: the record starting on this line runs on to line %d (is a quote not closed?)", pe.Err, pe.Line)}
	}
	return &conf.Error{File: path, Line: pe.Line, Msg: pe.Err.Error()}
}

func parseJSONLines(path string, data []byte, rules readRules) (VisitList, conf.Errors) {
	var (
		l    VisitList
		errs conf.Errors
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			if text != "" {
				l.Comments++
			}
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
		if rules.refuse {
			if k := repeatedKey(text); k != "" {
				errs = append(errs, &conf.Error{File: path, Line: line, Path: k, Msg: "appears twice in the object: each key must appear once"})
				continue
			}
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
		id, e := visitID(path, line, id, rules)
		if e != nil {
			errs = append(errs, e)
			continue
		}
		for k, v := range obj {
			obj[k] = plainJSON(v)
		}
		if len(obj) == 0 {
			obj = nil
		}
		l.Visits = append(l.Visits, Visit{ID: id, Props: obj, Line: line})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &conf.Error{File: path, Line: line + 1, Msg: err.Error()})
	}
	return l, errs
}

// repeatedKey returns the first key that appears twice among the
// top-level keys of text, a JSON object known to be valid, or "".
func repeatedKey(text string) string {
	dec := json.NewDecoder(strings.NewReader(text))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := t.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
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
			if pr.want != propAny {
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
