package events

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// SubjectPrefix is the first token of every NATS subject that carries
// events; the JetStream stream captures SubjectPrefix + ".>".
const SubjectPrefix = "dpsbatch"

// Subject returns the NATS subject that carries the events of one run on
// one topic: SubjectPrefix.<run>.<topic>, each of run and topic encoded as
// one subject token by Token. Any tool that speaks NATS can publish to it
// (the payload in the form Encode writes).
func Subject(topic, runID string) string {
	return SubjectPrefix + "." + Token(runID) + "." + Token(topic)
}

// Token encodes s as one NATS subject token. In NATS '.' separates tokens,
// '*' and '>' are wildcards, white space ends a subject, and an empty token
// is invalid; so ASCII letters, digits, '-' and '_' stand for themselves,
// every other byte becomes '~' and two upper-case hex digits, and the
// empty string becomes "~". The encoding is one-to-one: two different
// strings never share a token.
func Token(s string) string {
	if s == "" {
		return "~"
	}
	plain := true
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// consumerName is the name of the durable JetStream consumer that
// subscriber uses for subject on stream: a hash, since consumer names
// have a restricted alphabet and length, and need not be read back.
func consumerName(stream, subject, subscriber string) string {
	h := sha256.Sum256([]byte(stream + "\x00" + subject + "\x00" + subscriber))
	return "dpsbatch_" + hex.EncodeToString(h[:16])
}
