// Package slurmrest is a small typed client of slurmrestd, Slurm's REST
// API: ping, submit a script with its job description, get and list
// jobs, cancel, list nodes and partitions, and from accounting (the
// dbv0.0.38 plugin) finished jobs and associations. It is dpsbatch's own:
// no generated or third-party Slurm client.
//
// A Client talks to one server, over a unix socket (local auth: the
// server runs every job as its own user, whoever connects) or over
// HTTP(S) with a JWT (the X-SLURM-USER-NAME and X-SLURM-USER-TOKEN
// headers: jobs run as the token's user). It reads which API versions the
// server offers (its OpenAPI listing) on first use and speaks the newest
// it knows; field shapes live in one file per version (v0038.go), read
// into the client's own types (types.go). Every answer's errors array is
// read, also with HTTP 200, and becomes an *Error.
//
// The token is read from an environment variable or a file at each
// request; it goes into the request's header and nowhere else: never in
// an error, a log, a URL or a process's arguments.
//
// It never signals a job's steps: slurmrestd's DELETE with a signal
// signals the batch script too (unlike scancel --signal), so Cancel only
// cancels. It knows nothing of dpsbatch's runs.
package slurmrest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/retry"
)

// Defaults of Options.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultRetryWait = 30 * time.Second
)

// Options configures a Client.
type Options struct {
	// URL is the server: unix:/path/to/socket, or http://host:port or
	// https://host:port.
	URL string
	// TokenEnv names an environment variable holding a JWT, TokenFile a
	// file holding one (as `scontrol token` prints it, with or without
	// the SLURM_JWT= prefix); at most one. Read at each request. Required
	// over HTTP(S); over a unix socket, a token makes the request JWT's
	// instead of local auth's.
	TokenEnv, TokenFile string
	// User is the user name sent with the token; "" for the token's own
	// (its "sun" claim).
	User string
	// Timeout bounds each request (DefaultTimeout when 0).
	Timeout time.Duration
	// RetryWait bounds the retries of a request that failed for a reason
	// that passes (the server or slurmctld restarting or busy), from its
	// first try to its last: DefaultRetryWait when 0, none when negative.
	RetryWait time.Duration
	// Transport replaces the HTTP transport (tests); nil for the default.
	Transport http.RoundTripper
}

// Client is a slurmrestd client, safe for concurrent use.
type Client struct {
	base    string // scheme://host, without a trailing slash
	http    *http.Client
	o       Options
	retry   retry.Policy
	timeout time.Duration

	mu  sync.Mutex // held while the version is negotiated
	api *api       // nil until negotiated
	db  bool       // the server serves api's accounting plugin
}

// New checks o and returns a client; it does not connect.
func New(o Options) (*Client, error) {
	c := &Client{o: o, timeout: o.Timeout, retry: retry.Policy{Bound: o.RetryWait, First: 250 * time.Millisecond}}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if o.RetryWait == 0 {
		c.retry.Bound = DefaultRetryWait
	}
	if o.TokenEnv != "" && o.TokenFile != "" {
		return nil, errors.New("slurmrest: give the token in an environment variable or a file, not both")
	}
	tr := o.Transport
	switch u, err := url.Parse(o.URL); {
	case err != nil:
		return nil, fmt.Errorf("slurmrest: server URL %q: %w", o.URL, err)
	case u.Scheme == "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("slurmrest: server URL %q: want unix:/absolute/path/to/socket", o.URL)
		}
		c.base = "http://localhost"
		if tr == nil {
			tr = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			}}
		}
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("slurmrest: server URL %q: want %s://host:port, no user, path or query", o.URL, u.Scheme)
		}
		if o.TokenEnv == "" && o.TokenFile == "" {
			return nil, fmt.Errorf("slurmrest: server %s: over HTTP slurmrestd needs a JWT: give a token file or environment variable", o.URL)
		}
		c.base = u.Scheme + "://" + u.Host
	default:
		return nil, fmt.Errorf("slurmrest: server URL %q: want unix:/path, http://host:port or https://host:port", o.URL)
	}
	// No redirects: the token header would follow one to another host.
	c.http = &http.Client{Transport: tr, CheckRedirect: noRedirect}
	if tr == nil {
		c.http.Transport = http.DefaultTransport
	}
	return c, nil
}

// jwt reports whether requests carry a token.
func (c *Client) jwt() bool { return c.o.TokenEnv != "" || c.o.TokenFile != "" }

// tokenChars is what a JWT is made of: base64url parts joined by dots.
var tokenChars = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*)*$`)

// credentials returns the user name and token to send, reading the token
// from its variable or file. Errors name where the token comes from,
// never what it holds.
func (c *Client) credentials() (user, token string, err error) {
	where := "environment variable " + c.o.TokenEnv
	if c.o.TokenFile != "" {
		where = "token file " + c.o.TokenFile
		b, err := os.ReadFile(c.o.TokenFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", "", fmt.Errorf("slurmrest: %s: %w", where, err)
		}
		token = string(b)
	} else {
		token = os.Getenv(c.o.TokenEnv)
	}
	token = strings.TrimPrefix(strings.TrimSpace(token), "SLURM_JWT=")
	if token == "" {
		return "", "", fmt.Errorf("slurmrest: %s: no token in it", where)
	}
	if !tokenChars.MatchString(token) {
		return "", "", fmt.Errorf("slurmrest: %s: what it holds is not a JWT (base64url parts joined by dots)", where)
	}
	user = c.o.User
	if user == "" {
		if user = tokenUser(token); user == "" {
			return "", "", fmt.Errorf("slurmrest: %s: the token names no user (no \"sun\" claim): give the user name", where)
		}
	}
	if strings.ContainsAny(user, "\r\n") {
		return "", "", fmt.Errorf("slurmrest: bad user name %q", user)
	}
	return user, token, nil
}

// tokenUser is the user name a Slurm JWT is for (its "sun" claim), or "".
func tokenUser(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sun string `json:"sun"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sun
}

// call is one request: method and path (with the query, if any), the JSON
// body (nil for none), and whether it may be sent again after an answer
// that leaves open whether it was carried out (reads may; submit and
// cancel may not).
type call struct {
	method, path string
	body         any
	idempotent   bool
}

// do makes the request, with retries, and returns the answer's body once
// its status is 200 and its errors array empty.
func (c *Client) do(ctx context.Context, r call) ([]byte, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("slurmrest: %s %s: %w", r.method, cut(r.path), err)
		}
	}
	var out []byte
	again := func(err error) bool { return retriable(err, r.idempotent) }
	_, _, err := c.retry.Do(ctx, again, func(error) error {
		var err error
		out, err = c.once1(ctx, r, payload)
		return err
	})
	return out, err
}

// once1 makes the request once.
func (c *Client) once1(ctx context.Context, r call, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("slurmrest: %s %s: %w", r.method, cut(r.path), err)
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.jwt() {
		user, token, err := c.credentials()
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-SLURM-USER-NAME", user)
		req.Header.Set("X-SLURM-USER-TOKEN", token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &transportError{method: r.method, path: cut(r.path), err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, &transportError{method: r.method, path: cut(r.path), err: err, sent: true}
	}
	return body, c.check(r, resp.StatusCode, body)
}

// check turns an answer's status and errors array into an *Error.
func (c *Client) check(r call, status int, body []byte) error {
	var env struct {
		Errors []ErrorItem `json:"errors"`
	}
	jsonErr := json.Unmarshal(body, &env)
	if status == http.StatusOK && jsonErr == nil && len(env.Errors) == 0 {
		return nil
	}
	e := &Error{Method: r.method, Path: cut(r.path), Status: status, Items: env.Errors, JWT: c.jwt()}
	if jsonErr != nil {
		e.Body = excerpt(body)
		if status == http.StatusOK {
			e.Body = "not JSON: " + e.Body
		}
	}
	return e
}

// cut is path without its query (which may hold a job name).
func cut(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// transportError is a request that got no answer.
type transportError struct {
	method, path string
	err          error
	sent         bool // the request went out before the failure
}

func (e *transportError) Error() string {
	// url.Error repeats the URL; the path is enough.
	err := e.err
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Sprintf("slurmrest: %s %s: %v", e.method, e.path, err)
}

func (e *transportError) Unwrap() error { return e.err }

// unsent reports whether the request never reached the server: it could
// not connect (the server restarting, or not there yet).
func (e *transportError) unsent() bool {
	return !e.sent && (errors.Is(e.err, syscall.ECONNREFUSED) || errors.Is(e.err, syscall.ENOENT))
}

// retriable reports whether err may pass, and the request may be made
// again: always when it was not carried out; after an answer that leaves
// it open, only when it is idempotent.
func retriable(err error, idempotent bool) bool {
	var te *transportError
	if errors.As(err, &te) {
		return te.unsent() || idempotent && !errors.Is(err, context.Canceled)
	}
	var e *Error
	if errors.As(err, &e) {
		return e.unsent() || idempotent && e.unsure()
	}
	return false
}

// noRedirect keeps a redirect's answer as the answer (an error, as it is
// not 200): the token would go along to wherever it points.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
