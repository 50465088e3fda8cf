package enum

import "testing"

type color string

func TestParse(t *testing.T) {
	names := []color{"red", "green"}
	if c, err := Parse("color", "green", names); err != nil || c != "green" {
		t.Errorf(`Parse("green") = %q, %v`, c, err)
	}
	for _, word := range []string{"", "Green", "blue"} {
		c, err := Parse("color", word, names)
		want := `unknown color "` + word + `" (have: red, green)`
		if err == nil || err.Error() != want || c != "" {
			t.Errorf("Parse(%q) = %q, %v; want the error %s", word, c, err, want)
		}
	}
}
