package tally

// One method per operation of docs/openapi.yaml, named after its operationId, in the
// contract's order. Path parameters are arguments; optional query parameters are an
// options struct (nil for none) or, for the one optional uid, 0 for none. Values are sent
// as given and checked by tallyd, whose answer to a bad one is an *Error with
// CodeInvalidArgument: the contract has one judge.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// GetItem (getItem) returns one item's counts; with uid (not 0), also whether uid likes it
// and has it in a collection.
func (c *Client) GetItem(ctx context.Context, biz string, id, uid int64) (*ItemState, error) {
	var out ItemState
	err := c.do(ctx, &request{method: http.MethodGet, path: itemPath(biz, id),
		query: uidQuery(uid)}, &out)
	return result(&out, err)
}

// GetItems (getItems) returns several items of one biz, in the order of ids (1 to 100 of
// them, repeats allowed); with uid (not 0), with uid's liked and collected flags.
func (c *Client) GetItems(ctx context.Context, biz string, ids []int64, uid int64) (*ItemStates, error) {
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	q := uidQuery(uid)
	if q == nil {
		q = url.Values{}
	}
	q.Set("ids", strings.Join(list, ","))
	var out ItemStates
	err := c.do(ctx, &request{method: http.MethodGet, path: "/v1/items/" + seg(biz), query: q},
		&out)
	return result(&out, err)
}

// RecordRead (recordRead) records one read of the item, counted asynchronously (visible in
// ReadCnt within about 100 ms). req may be nil: an anonymous read. Every attempt of the
// call carries the same Idempotency-Key (see the package doc), returned in the answer.
func (c *Client) RecordRead(ctx context.Context, biz string, id int64, req *RecordReadRequest) (*ReadAccepted, error) {
	if req == nil {
		req = &RecordReadRequest{}
	}
	key := req.IdempotencyKey
	if key == "" {
		var err error
		if key, err = newIdempotencyKey(); err != nil {
			return nil, err
		}
	}
	// net/http refuses to send control characters in a header, and a refusal would look
	// like a network failure; anything else is tallyd's to judge.
	for _, b := range []byte(key) {
		if (b < ' ' && b != '\t') || b > '~' {
			return nil, errors.New("tally: an Idempotency-Key is printable ASCII")
		}
	}
	rq := &request{method: http.MethodPost, path: itemPath(biz, id) + "/reads",
		header: http.Header{"Idempotency-Key": {key}}}
	if req.UID != 0 || req.Viewer != "" {
		body, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		rq.body = body
	}
	out := ReadAccepted{IdempotencyKey: key}
	err := c.do(ctx, rq, &out)
	return result(&out, err)
}

// Like (like) makes uid like the item; idempotent. The answer is the item's state for uid.
func (c *Client) Like(ctx context.Context, uid int64, biz string, id int64) (*ItemState, error) {
	return c.state(ctx, http.MethodPut, likePath(uid, biz, id))
}

// Unlike (unlike) takes uid's like of the item back; idempotent.
func (c *Client) Unlike(ctx context.Context, uid int64, biz string, id int64) (*ItemState, error) {
	return c.state(ctx, http.MethodDelete, likePath(uid, biz, id))
}

// ListLikes (listLikes) returns one page of uid's active likes in biz, most recent first.
func (c *Client) ListLikes(ctx context.Context, uid int64, biz string, opts *ListOptions) (*ListPage, error) {
	return c.page(ctx, "/v1/users/"+num(uid)+"/likes/"+seg(biz), opts)
}

// Collect (collect) puts the item into uid's collection cid. An item is in at most one
// collection of a user: putting it into another moves it, and CollectCnt does not change.
// Idempotent.
func (c *Client) Collect(ctx context.Context, uid, cid int64, biz string, id int64) (*ItemState, error) {
	return c.state(ctx, http.MethodPut, collectPath(uid, cid, biz, id))
}

// Uncollect (uncollect) takes the item out of uid's collection cid if it is there, else
// changes nothing.
func (c *Client) Uncollect(ctx context.Context, uid, cid int64, biz string, id int64) (*ItemState, error) {
	return c.state(ctx, http.MethodDelete, collectPath(uid, cid, biz, id))
}

// ListCollection (listCollection) returns one page of the items in uid's collection cid,
// most recently added first.
func (c *Client) ListCollection(ctx context.Context, uid, cid int64, opts *ListOptions) (*ListPage, error) {
	return c.page(ctx, "/v1/users/"+num(uid)+"/collections/"+num(cid)+"/items", opts)
}

// GetTop (getTop) returns the items of biz with the highest count by, ties by id
// ascending: all-time, or with opts.Window the items whose sum over the window is
// positive, each with that sum as WindowCnt ("trending").
func (c *Client) GetTop(ctx context.Context, biz string, by Metric, opts *TopOptions) (*ItemStates, error) {
	q := url.Values{"by": {string(by)}}
	if opts != nil {
		if opts.Limit != 0 {
			q.Set("limit", strconv.Itoa(opts.Limit))
		}
		if opts.Window != "" {
			q.Set("window", string(opts.Window))
		}
	}
	var out ItemStates
	err := c.do(ctx, &request{method: http.MethodGet, path: "/v1/top/" + seg(biz), query: q},
		&out)
	return result(&out, err)
}

// GetHistory (getHistory) returns the item's count by per hour or per day, oldest first;
// at most 1,000 buckets (a wider range is a CodeInvalidArgument error).
func (c *Client) GetHistory(ctx context.Context, biz string, id int64, by Metric, bucket Bucket, opts *HistoryOptions) (*History, error) {
	q := url.Values{"by": {string(by)}, "bucket": {string(bucket)}}
	if opts != nil {
		if !opts.From.IsZero() {
			q.Set("from", strconv.FormatInt(opts.From.UnixMilli(), 10))
		}
		if !opts.To.IsZero() {
			q.Set("to", strconv.FormatInt(opts.To.UnixMilli(), 10))
		}
	}
	var out History
	err := c.do(ctx, &request{method: http.MethodGet, path: itemPath(biz, id) + "/history",
		query: q}, &out)
	return result(&out, err)
}

// GetHealth (getHealth) asks /healthz whether the store answers and commits. Open without
// a credential; asked once. Not healthy is an *Error (503 CodeUnavailable).
func (c *Client) GetHealth(ctx context.Context) (*Status, error) {
	return c.probe(ctx, "/healthz")
}

// GetLiveness (getLiveness) asks /livez whether the process answers.
func (c *Client) GetLiveness(ctx context.Context) (*Status, error) {
	return c.probe(ctx, "/livez")
}

// GetReadiness (getReadiness) asks /readyz whether to send traffic to this tallyd (the
// store answers, the bus takes reads, not draining).
func (c *Client) GetReadiness(ctx context.Context) (*Status, error) {
	return c.probe(ctx, "/readyz")
}

// GetMetrics (getMetrics) returns /metrics, Prometheus text format 0.0.4. With API keys
// it needs the metrics (or admin) scope.
func (c *Client) GetMetrics(ctx context.Context) (string, error) {
	var out string
	err := c.do(ctx, &request{method: http.MethodGet, path: "/metrics"}, &out)
	return out, err
}

// GetOperatorPage (getOperatorPage) returns the operator's page, /ui (HTML).
func (c *Client) GetOperatorPage(ctx context.Context) (string, error) {
	var out string
	err := c.do(ctx, &request{method: http.MethodGet, path: "/ui"}, &out)
	return out, err
}

func (c *Client) state(ctx context.Context, method, path string) (*ItemState, error) {
	var out ItemState
	err := c.do(ctx, &request{method: method, path: path}, &out)
	return result(&out, err)
}

func (c *Client) page(ctx context.Context, path string, opts *ListOptions) (*ListPage, error) {
	var q url.Values
	if opts != nil && (opts.Limit != 0 || opts.Cursor != "") {
		q = url.Values{}
		if opts.Limit != 0 {
			q.Set("limit", strconv.Itoa(opts.Limit))
		}
		if opts.Cursor != "" {
			q.Set("cursor", opts.Cursor)
		}
	}
	var out ListPage
	err := c.do(ctx, &request{method: http.MethodGet, path: path, query: q}, &out)
	return result(&out, err)
}

func (c *Client) probe(ctx context.Context, path string) (*Status, error) {
	var out Status
	err := c.do(ctx, &request{method: http.MethodGet, path: path, once: true}, &out)
	return result(&out, err)
}

// result gives callers nil with every error, never a half-filled value.
func result[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// seg escapes a path segment, so that a biz holding '/' or '?' stays one segment (and is
// refused by tallyd) rather than naming another route.
func seg(s string) string { return url.PathEscape(s) }

func num(n int64) string { return strconv.FormatInt(n, 10) }

func uidQuery(uid int64) url.Values {
	if uid == 0 {
		return nil
	}
	return url.Values{"uid": {num(uid)}}
}

func itemPath(biz string, id int64) string { return "/v1/items/" + seg(biz) + "/" + num(id) }

func likePath(uid int64, biz string, id int64) string {
	return "/v1/users/" + num(uid) + "/likes/" + seg(biz) + "/" + num(id)
}

func collectPath(uid, cid int64, biz string, id int64) string {
	return "/v1/users/" + num(uid) + "/collections/" + num(cid) + "/items/" + seg(biz) + "/" +
		num(id)
}
