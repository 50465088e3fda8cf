package slurmrest

import (
	"errors"
	"fmt"
	"strings"
)

// Errors that callers branch on; an *Error matches them with errors.Is.
var (
	// ErrAuth: slurmrestd refused the credentials (HTTP 401 or 403).
	ErrAuth = errors.New("slurmrest: authentication refused")
	// ErrNoJob: the controller does not know the job (Slurm error 2017,
	// "Invalid job id specified"): it never existed, or ended longer ago
	// than MinJobAge.
	ErrNoJob = errors.New("slurmrest: no such job")
	// ErrNothingFound: accounting has nothing for the query (error 9003).
	ErrNothingFound = errors.New("slurmrest: nothing found")
	// ErrNoAccounting: the server does not serve the accounting API
	// (slurmrestd started without -s openapi/dbv0.0.38).
	ErrNoAccounting = errors.New("slurmrest: the server does not serve the accounting API")
	// ErrNoVersion: the server offers no API version this client reads.
	ErrNoVersion = errors.New("slurmrest: no supported API version")
)

// Slurm's error numbers that the client reads.
const (
	errnoInvalidJobID = 2017 // ESLURM_INVALID_JOB_ID
	errnoNothingFound = 9003 // ESLURM_REST_EMPTY_RESULT
	errnoEAGAIN       = 11   // EAGAIN: Resource temporarily unavailable
	errnoConnection   = 1001 // SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR: unable to contact slurmctld
	errnoSend         = 1002 // SLURMCTLD_COMMUNICATIONS_SEND_ERROR
	errnoReceive      = 1003 // SLURMCTLD_COMMUNICATIONS_RECEIVE_ERROR
	errnoTimeout      = 5004 // SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT: Socket timed out on send/recv
	errnoZeroBytes    = 5005 // SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT
)

// ErrorItem is one entry of the errors array slurmrestd puts in every
// answer.
type ErrorItem struct {
	Number      int    `json:"error_number"`
	Error       string `json:"error"`
	Description string `json:"description"`
	Source      string `json:"source"`
}

func (i ErrorItem) String() string {
	s := i.Error
	if i.Description != "" && i.Description != i.Error {
		s += ": " + i.Description
	}
	if i.Number != 0 {
		s += fmt.Sprintf(" (error %d", i.Number)
		if i.Source != "" {
			s += " in " + i.Source
		}
		s += ")"
	}
	return s
}

// Error is a request slurmrestd answered with an error: an HTTP status
// other than 200, or a non-empty errors array (which it also sends with
// 200). It never holds credentials.
type Error struct {
	Method, Path string // the request, without the query
	Status       int    // HTTP status
	Items        []ErrorItem
	Body         string // an excerpt of an answer that is not JSON
	// JWT says the request carried a token: a wrong or expired one makes
	// slurmrestd 22.05 answer 500 with unrelated errors, so the message
	// says so.
	JWT bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "slurmrest: %s %s: HTTP %d", e.Method, e.Path, e.Status)
	for i, it := range e.Items {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(it.String())
	}
	if len(e.Items) == 0 && e.Body != "" {
		b.WriteString(": " + e.Body)
	}
	switch {
	case e.Status == 401 || e.Status == 403:
		b.WriteString(" (slurmrestd refused the credentials: check the user name and token)")
	case e.JWT && e.Status == 500 && e.has(-1, errnoZeroBytes):
		b.WriteString(" (an expired or wrong token gives this error too)")
	}
	return b.String()
}

// has reports whether an item carries one of numbers.
func (e *Error) has(numbers ...int) bool {
	for _, it := range e.Items {
		for _, n := range numbers {
			if it.Number == n {
				return true
			}
		}
	}
	return false
}

// Is matches ErrAuth, ErrNoJob and ErrNothingFound.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrAuth:
		return e.Status == 401 || e.Status == 403
	case ErrNoJob:
		return e.has(errnoInvalidJobID)
	case ErrNothingFound:
		return e.has(errnoNothingFound)
	}
	return false
}

// unsent reports whether the error proves the controller did not act on
// the request: it could not be reached, or refused for now.
func (e *Error) unsent() bool { return e.has(errnoConnection, errnoEAGAIN) }

// unsure reports whether the request may have been carried out before its
// answer was lost: the controller was busy past the timeout.
func (e *Error) unsure() bool {
	return e.Status == 502 || e.Status == 503 || e.Status == 504 || e.has(errnoSend, errnoReceive, errnoTimeout)
}

// excerpt is the start of a body that is not JSON, on one line.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
