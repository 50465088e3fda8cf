package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// dump is everything a state file holds, as text: its journal mode, its
// header's IDs, its schema and every table's rows, sorted by their columns
// in order (the visits by seq).
func dump(t *testing.T, path string) []string {
	t.Helper()
	s, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []string
	for _, q := range []string{"PRAGMA journal_mode", "PRAGMA application_id", "PRAGMA user_version", "PRAGMA integrity_check",
		"SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name"} {
		out = append(out, q)
		out = append(out, rowsOf(t, s, q)...)
	}
	for _, table := range rowsOf(t, s, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name") {
		cols := rowsOf(t, s, "SELECT cid + 1 FROM pragma_table_info('"+table+"')")
		q := "SELECT * FROM " + table + " ORDER BY " + strings.Join(cols, ", ")
		out = append(out, q)
		out = append(out, rowsOf(t, s, q)...)
	}
	return out
}

// rowsOf runs query on s and prints each row.
func rowsOf(t *testing.T, s *Store, query string) []string {
	t.Helper()
	rows, err := s.db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSuffix(fmt.Sprintln(vals...), "\n"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// CreateWithVisits writes what Create, AddVisits and Close write, for a
// short list and for a long one (several of insertVisits's statements,
// filled without a journal), in the same journal mode; and after a
// duplicate visit ID it says what AddVisits says and leaves no file.
func TestCreateWithVisitsAsCreateAndAddVisits(t *testing.T) {
	long := make([]string, 2*visitsPerInsert+123)
	for i := range long {
		long[i] = fmt.Sprintf("v%d", (i*7919)%len(long)) // not in sorted order
	}
	r := Run{ID: "r1", Name: "r1", Dir: "/runs/r1", Pipeline: "p", Created: at(0), Settings: `{"version":1}`}
	for _, ids := range [][]string{nil, {"a", "c", "b"}, long} {
		dir := t.TempDir()
		before, after := filepath.Join(dir, "before.db"), filepath.Join(dir, "after.db")
		s, err := Create(before, r)
		if err != nil {
			t.Fatal(err)
		}
		must(t, s.AddVisits(ids))
		must(t, s.Close())
		must(t, CreateWithVisits(after, r, ids))
		want, got := dump(t, before), dump(t, after)
		if !reflect.DeepEqual(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("%d visits: the files differ first at line %d:\n got %s\nwant %s", len(ids), i, got[i], want[i])
				}
			}
			t.Fatalf("%d visits: %d lines, want %d", len(ids), len(got), len(want))
		}
		if len(ids) == len(long) && !strings.Contains(strings.Join(got, "\n"), "PRAGMA journal_mode\nwal") {
			t.Errorf("journal mode after filling: %q, want wal", got[:2])
		}
	}
	for _, ids := range [][]string{{"a", "b", "a"}, append(long[:len(long):len(long)], long[5])} {
		dir := t.TempDir()
		path := filepath.Join(dir, "run.db")
		err := CreateWithVisits(path, r, ids)
		want := fmt.Sprintf(`duplicate visit ID %q`, ids[len(ids)-1])
		if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%d visits, the last repeated: err = %v, want conf.ErrInvalid saying %s", len(ids), err, want)
		}
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			t.Errorf("%d visits, the last repeated: left %v", len(ids), left)
		}
	}
}
