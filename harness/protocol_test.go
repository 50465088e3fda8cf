package harness

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestProtocolNamesEveryMessage keeps protocol.go in step with the
// messages: every type that crosses the communicator (each type declared
// in messages.go, and each type of the package named ...Msg) must open a
// paragraph of the protocol's Messages section, and every message-like
// name the protocol text uses (...Msg, ...Report) must be a type of the
// package, so a renamed or deleted message leaves no stale paragraph.
func TestProtocolNamesEveryMessage(t *testing.T) {
	messages, declared := messageTypes(t, ".")
	doc := protocolText(t, "protocol.go")
	for _, p := range protocolProblems(messages, declared, doc) {
		t.Error(p)
	}
}

// protocolProblems checks doc, the protocol's text, against the message
// types (name -> file) and the types the package declares.
func protocolProblems(messages map[string]string, declared map[string]bool, doc string) []string {
	msgs := section(doc, "Messages")
	if strings.TrimSpace(msgs) == "" {
		return []string{`protocol.go has no "# Messages" section`}
	}
	leads := paragraphLeads(msgs)
	var problems []string
	for _, name := range sortedKeys(messages) {
		if !leads[name] {
			problems = append(problems, fmt.Sprintf("%s (%s) crosses the communicator but no paragraph of protocol.go's Messages section starts with it: "+
				"write one (who sends it, when, what the receiver does and answers) and put it in the Order list", name, messages[name]))
		}
	}
	seen := map[string]bool{}
	for _, name := range regexp.MustCompile(`\b[a-z][A-Za-z0-9]*(Msg|Report)\b`).FindAllString(doc, -1) {
		if !declared[name] && !seen[name] {
			seen[name] = true
			problems = append(problems, fmt.Sprintf("protocol.go names %s, which is not a type of package harness", name))
		}
	}
	return problems
}

// messageTypes parses the package's non-test files in dir and returns the
// message types (name -> file) and every type the package declares.
func messageTypes(t *testing.T, dir string) (map[string]string, map[string]bool) {
	t.Helper()
	messages, declared := map[string]string{}, map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range packageSources(t, dir) {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(path)
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				name := s.(*ast.TypeSpec).Name.Name
				declared[name] = true
				if base == "messages.go" || strings.HasSuffix(name, "Msg") {
					messages[name] = base
				}
			}
		}
	}
	if len(messages) == 0 {
		t.Fatalf("no message types found in %s", dir)
	}
	return messages, declared
}

// protocolText returns the text of the comments in the protocol file.
func protocolText(t *testing.T, path string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, cg := range f.Comments {
		b.WriteString(cg.Text())
		b.WriteString("\n")
	}
	return b.String()
}

// section returns the lines after the heading "# name" up to the next
// heading, or "" when there is no such heading.
func section(doc, name string) string {
	_, after, ok := strings.Cut(doc, "\n# "+name+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(after, "\n# "); i >= 0 {
		after = after[:i]
	}
	return after
}

// paragraphLeads returns the first word of every paragraph of text.
func paragraphLeads(text string) map[string]bool {
	leads := map[string]bool{}
	for _, para := range strings.Split(text, "\n\n") {
		para = strings.TrimSpace(para)
		if i := strings.IndexFunc(para, func(r rune) bool { return r == ' ' || r == ':' || r == '\n' }); i > 0 {
			leads[para[:i]] = true
		}
	}
	return leads
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestProtocolCheckCatches checks the check: a message type without a
// paragraph, and a name in the text that is no type (a message renamed or
// deleted), are both reported; a name mentioned outside the Messages
// section does not count as a paragraph.
func TestProtocolCheckCatches(t *testing.T) {
	doc := "Intro.\n\n# Messages\n\nvisitMsg: sent first.\n\nstaleMsg: gone.\n\n# Order\n\nnewMsg is named here only.\n"
	messages := map[string]string{"visitMsg": "messages.go", "newMsg": "messages.go"}
	declared := map[string]bool{"visitMsg": true, "newMsg": true}
	got := protocolProblems(messages, declared, doc)
	want := []string{"newMsg (messages.go) crosses", "names staleMsg"}
	if len(got) != len(want) {
		t.Fatalf("problems %q, want %d: %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
		}
	}
	if got := protocolProblems(messages, declared, "no sections"); len(got) != 1 {
		t.Errorf("a text without a Messages section: %q, want one problem", got)
	}
}
