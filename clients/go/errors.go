package tally

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The API's error codes: the enum of the Error schema in docs/openapi.yaml.
const (
	CodeInvalidArgument         = "invalid_argument"           // 400: a malformed biz, id, query or body
	CodeBadRequest              = "bad_request"                // 400: not well-formed HTTP
	CodeUnauthenticated         = "unauthenticated"            // 401: no valid bearer token
	CodePermissionDenied        = "permission_denied"          // 403: a scope or uid the credential lacks
	CodeNotFound                = "not_found"                  // 404: no route has this path
	CodeMethodNotAllowed        = "method_not_allowed"         // 405
	CodeRequestTimeout          = "request_timeout"            // 408: the request came too slowly
	CodePayloadTooLarge         = "payload_too_large"          // 413: a body over 64 KiB
	CodeExpectationFailed       = "expectation_failed"         // 417
	CodeHeadersTooLarge         = "headers_too_large"          // 431
	CodeRateLimited             = "rate_limited"               // 429: see Error.RetryAfter
	CodeNotImplemented          = "not_implemented"            // 501
	CodeHTTPVersionNotSupported = "http_version_not_supported" // 505
	CodeUnavailable             = "unavailable"                // 503: the store or a queue cannot take it now
	CodeInternal                = "internal"                   // 500: logged by tallyd
)

// Error is an answer other than 2xx. Find it in a returned error with errors.As:
//
//	var e *tally.Error
//	if errors.As(err, &e) && e.Code == tally.CodeRateLimited { ... e.RetryAfter ... }
type Error struct {
	StatusCode int    // the HTTP status
	Code       string // one of the Code constants; "" when the body was not tally's JSON error (a proxy's page)
	Message    string // for people; the start of the body when it was not tally's JSON error
	// RetryAfter is the answer's Retry-After (a 429 always has one, of at least 1 s); 0: none.
	RetryAfter time.Duration
	// RequestID is the answer's X-Request-Id: tallyd's log lines about the request carry it.
	RequestID string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tally: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after " + e.RetryAfter.String() + ")")
	}
	if e.RequestID != "" {
		b.WriteString(" [request " + e.RequestID + "]")
	}
	return b.String()
}

// newError reads a non-2xx answer: tally's {"error":{"code","message"}} when it is that,
// else the status and the start of whatever the body was.
func newError(resp *http.Response, body []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		RequestID:  resp.Header.Get("X-Request-Id")}
	var doc struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &doc) == nil && doc.Error.Code != "" {
		e.Code, e.Message = doc.Error.Code, doc.Error.Message
		return e
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = strings.ToValidUTF8(text[:200], "") + "..."
	}
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	e.Message = text
	return e
}
