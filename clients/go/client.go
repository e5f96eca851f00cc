package tally

// The request loop: one HTTP exchange per attempt, read whole before it is judged, and the
// retry decision (what, how long to wait, when to stop) in one place, so that every
// operation behaves the same. Operations only say method, path, query, body and headers.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Version is this client's version, sent in its User-Agent.
const Version = "1.0.0"

// maxBody bounds a response body read into memory (/metrics is the largest, some KiB).
const maxBody = 32 << 20

// Client calls one tallyd (or a load balancer in front of several). It is safe for
// concurrent use by several goroutines and holds nothing per call.
type Client struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	token string // sent as "Authorization: Bearer TOKEN"; "" sends none
	hc    *http.Client
	retry RetryPolicy
}

// RetryPolicy bounds the retries of one call (see the package doc for what is retried).
type RetryPolicy struct {
	// MaxAttempts is the number of attempts of one call, the first included; 1 or less
	// turns retrying off.
	MaxAttempts int
	// BaseDelay is the wait before the second attempt. Each later wait doubles, up to
	// MaxDelay, and each is drawn at random from its upper half (jitter), so that clients
	// failed together do not come back together.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After waited for; an answer asking for longer
	// ends the call with that answer (its [Error.RetryAfter] says how long). 0: 30 s.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is what [New] uses unless told otherwise: 4 attempts, waits of about
// 100 ms, 200 ms and 400 ms (at most 2 s), Retry-After honoured up to 30 s.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond,
	MaxDelay: 2 * time.Second, MaxRetryAfter: 30 * time.Second}

// NoRetry makes every call one attempt.
var NoRetry = RetryPolicy{MaxAttempts: 1}

// Option configures a [Client] in [New].
type Option func(*Client)

// WithToken sends token as "Authorization: Bearer TOKEN" on every request: an API key made
// by `tallyctl key`, or an end user's JWT. Without it (or with ""), none is sent.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient makes requests through hc (its Transport, Timeout, TLS settings) instead
// of [http.DefaultClient].
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetry replaces [DefaultRetryPolicy]; [NoRetry] turns retrying off.
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// New returns a client for the tallyd at baseURL: http or https, a host, and optionally a
// path prefix that a proxy serves tally under ("https://api.example.com/tally").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("tally: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("tally: base URL %q: want http(s)://HOST[:PORT][/PREFIX]", baseURL)
	}
	c := &Client{base: strings.TrimRight(u.String(), "/"), hc: http.DefaultClient,
		retry: DefaultRetryPolicy}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	// A header value net/http refuses to send would fail every attempt as a transport
	// error; say so once, here.
	for _, b := range []byte(c.token) {
		if b <= ' ' || b > '~' {
			return nil, errors.New("tally: the token must be printable ASCII without spaces")
		}
	}
	return c, nil
}

// request is one logical call, the same for each of its attempts.
type request struct {
	method string
	path   string     // escaped, from "/": "/v1/items/article/7"
	query  url.Values // nil: none
	body   []byte     // JSON; nil: no body
	header http.Header
	once   bool // a probe: asked once whatever the policy
}

// do runs rq until an answer is final and decodes a 2xx body into out: a *string takes the
// body as text, anything else is JSON-decoded; nil discards it.
func (c *Client) do(ctx context.Context, rq *request, out any) error {
	if ctx == nil {
		return errors.New("tally: nil Context")
	}
	attempts := c.retry.MaxAttempts
	if attempts < 1 || rq.once {
		attempts = 1
	}
	var last error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return stopped(err, last, attempt-1)
		}
		body, err := c.attempt(ctx, rq)
		if err == nil {
			return decode(body, out, rq)
		}
		if ctx.Err() != nil { // the transport gave up because of ctx (err wraps its error)
			if last == nil {
				return err
			}
			return stopped(ctx.Err(), last, attempt)
		}
		last = err
		retry, after := retryable(err)
		if !retry || attempt >= attempts {
			return err
		}
		wait := c.backoff(attempt)
		if after > 0 {
			longest := c.retry.MaxRetryAfter
			if longest <= 0 {
				longest = DefaultRetryPolicy.MaxRetryAfter
			}
			if after > longest {
				return err
			}
			wait = after + wait/4 // at least what the server asked, spread a little
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// The next attempt could only start after the deadline: end now.
			return stopped(context.DeadlineExceeded, last, attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return stopped(ctx.Err(), last, attempt)
		case <-t.C:
		}
	}
}

// stopped is the error of a call its context ended: both the context's error and the last
// attempt's are in the chain (errors.Is and errors.As find either).
func stopped(ctxErr, last error, attempts int) error {
	if last == nil {
		return fmt.Errorf("tally: %w", ctxErr)
	}
	return fmt.Errorf("tally: %w after %d attempt(s), the last: %w", ctxErr, attempts, last)
}

// attempt is one exchange. It returns the body of a 2xx answer, an *Error for any other
// answer, or a transport error (wrapped in *transportError) when no whole answer came.
func (c *Client) attempt(ctx context.Context, rq *request) ([]byte, error) {
	target := c.base + rq.path
	if len(rq.query) > 0 {
		target += "?" + rq.query.Encode()
	}
	var rd io.Reader
	if rq.body != nil {
		rd = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("tally: %s %s: %w", rq.method, rq.path, err)
	}
	for k, v := range rq.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tally-go/"+Version)
	if rq.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &transportError{op: rq.method + " " + rq.path, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, &transportError{op: rq.method + " " + rq.path, err: err}
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("tally: %s %s: response body over %d bytes", rq.method,
			rq.path, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newError(resp, body)
	}
	return body, nil
}

func decode(body []byte, out any, rq *request) error {
	switch o := out.(type) {
	case nil:
		return nil
	case *string:
		*o = string(body)
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("tally: %s %s: the answer is not the contract's JSON: %w",
			rq.method, rq.path, err)
	}
	return nil
}

// transportError is an attempt that got no whole answer: connecting, sending or reading
// failed. The request may or may not have reached tallyd.
type transportError struct {
	op  string
	err error
}

func (e *transportError) Error() string { return "tally: " + e.op + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// retryable says whether err may go better on another attempt, and how long the server
// asked to wait first (0: not said).
func retryable(err error) (bool, time.Duration) {
	var te *transportError
	if errors.As(err, &te) {
		// A certificate that does not verify will not verify on the next attempt either.
		var cv *tls.CertificateVerificationError
		return !errors.As(err, &cv), 0
	}
	var e *Error
	if !errors.As(err, &e) {
		return false, 0
	}
	switch {
	case e.StatusCode == http.StatusRequestTimeout, e.StatusCode == http.StatusTooManyRequests:
		return true, e.RetryAfter
	case e.StatusCode == http.StatusNotImplemented,
		e.StatusCode == http.StatusHTTPVersionNotSupported:
		return false, 0
	case e.StatusCode >= 500:
		return true, e.RetryAfter
	}
	return false, 0
}

// backoff is the wait after attempt n (1-based): BaseDelay * 2^(n-1), at most MaxDelay,
// drawn from its upper half.
func (c *Client) backoff(n int) time.Duration {
	d, ceiling := c.retry.BaseDelay, c.retry.MaxDelay
	if d <= 0 {
		d = DefaultRetryPolicy.BaseDelay
	}
	if ceiling < d {
		ceiling = d
	}
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling {
		d = ceiling
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// newIdempotencyKey is 128 random bits in hex: unique for every practical purpose, and
// unguessable, so that another caller cannot pre-empt a key (keys are per caller anyway).
func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("tally: making an Idempotency-Key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// parseRetryAfter reads a Retry-After header: whole seconds (what tallyd sends) or an
// HTTP date (what a proxy may send). 0: absent or unreadable.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 32); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
