package harness

import (
	"reflect"
	"testing"
)

func TestVisitMessageCodec(t *testing.T) {
	for _, m := range []visitMsg{
		{Stop: true},
		{Visit: "1001"},
		{Visit: "1001", Begin: true},
		{Visit: "1001", Begin: true, Done: []string{"ccd=1"}}, // with Done: gob
		{Visit: "1001", Props: map[string]any{"filter": "r", "exptime": "30", "": ""}},
		{Visit: "v", Props: map[string]any{"n": 3, "x": 1.5, "s": "a", "l": []any{"a", 2}}}, // not all strings: gob
	} {
		data, err := encodeVisit(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeVisit(data)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v gave %+v", m, got)
		}
	}
	// Flags other than Stop and Begin are not a visitMsg.
	if got, err := decodeVisit([]byte{1, 4, 1, 'v', 0}); err == nil {
		t.Errorf("flag 4: no error (%+v)", got)
	}
	good, _ := encodeVisit(visitMsg{Visit: "1001", Props: map[string]any{"filter": "r"}})
	for i := 1; i < len(good); i++ {
		if got, err := decodeVisit(good[:i]); err == nil {
			t.Errorf("truncated to %d bytes: no error (%+v)", i, got)
		}
	}
}
