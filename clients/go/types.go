package tally

import "time"

// The schemas of docs/openapi.yaml. Identifiers (id, uid, cid) are int64 in
// 1..9223372036854775807; counts are int64 and never negative. Fields the contract may add
// later are ignored when decoding.

// Metric is what a top list or a history counts (the `by` parameter).
type Metric string

const (
	ReadCnt    Metric = "read_cnt"
	LikeCnt    Metric = "like_cnt"
	CollectCnt Metric = "collect_cnt"
)

// Window is a trending window of [Client.GetTop]: the last 1, 24, 168 or 720 whole hours
// (UTC), the current one included.
type Window string

const (
	Window1h  Window = "1h"
	Window24h Window = "24h"
	Window7d  Window = "7d"
	Window30d Window = "30d"
)

// Bucket is the width of a [Client.GetHistory] point: a UTC hour or a UTC day.
type Bucket string

const (
	BucketHour Bucket = "hour"
	BucketDay  Bucket = "day"
)

// ItemState is one item's counts, and whether the uid asked about likes it and has it in a
// collection (both false when no uid was given, and in top lists).
type ItemState struct {
	Biz        string `json:"biz"`
	ID         int64  `json:"id"`
	ReadCnt    int64  `json:"read_cnt"`
	LikeCnt    int64  `json:"like_cnt"`
	CollectCnt int64  `json:"collect_cnt"`
	Liked      bool   `json:"liked"`
	Collected  bool   `json:"collected"`
	// WindowCnt is, in a windowed top list only, the item's sum over the window; 0 elsewhere.
	WindowCnt int64 `json:"window_cnt,omitempty"`
}

// ItemStates is a list of items: [Client.GetItems] in the order of the ids asked for, or a
// top list, highest first.
type ItemStates struct {
	Items []ItemState `json:"items"`
}

// ListItem is one entry of a user's likes or of a collection.
type ListItem struct {
	Biz string `json:"biz"`
	ID  int64  `json:"id"`
	// CTime is when the like or the collection became active, ms since the epoch.
	CTime int64 `json:"ctime"`
}

// Time is CTime as a time.Time.
func (it ListItem) Time() time.Time { return time.UnixMilli(it.CTime) }

// ListPage is one page of a list, most recent first. NextCursor is nil on the last page;
// otherwise pass it as [ListOptions.Cursor] for the next one. Treat it as opaque.
type ListPage struct {
	Items      []ListItem `json:"items"`
	NextCursor *string    `json:"next_cursor"`
}

// ListOptions pages [Client.ListLikes] and [Client.ListCollection]. The zero value asks
// for the first page of 20.
type ListOptions struct {
	Limit  int    // 1..100; 0: the server's default, 20
	Cursor string // the previous page's NextCursor; "": the first page
}

// TopOptions refines [Client.GetTop]. The zero value is the all-time top 10.
type TopOptions struct {
	Limit  int    // 1..100; 0: the server's default, 10
	Window Window // "": all-time counts; else the items' sums over the window, as WindowCnt
}

// HistoryOptions bounds [Client.GetHistory]. A zero time is left out: without From, the
// 1,000 buckets up to To; without To, now. The epoch itself is not a zero time.
type HistoryOptions struct {
	From time.Time // the first bucket is the one holding it
	To   time.Time // not before From; the last bucket is the one holding it
}

// History is an item's count per bucket, oldest first. Buckets whose sum is 0 are left out.
type History struct {
	Points []HistoryPoint `json:"points"`
}

// HistoryPoint is one bucket.
type HistoryPoint struct {
	T int64 `json:"t"` // the bucket's start, UTC ms since the epoch
	N int64 `json:"n"` // the bucket's sum; never 0 (an unlike makes it negative)
}

// Time is T as a time.Time.
func (p HistoryPoint) Time() time.Time { return time.UnixMilli(p.T) }

// RecordReadRequest is the body of [Client.RecordRead]: who read, by uid or by viewer (not
// both; neither is fine too), and the idempotency key of the read.
type RecordReadRequest struct {
	UID int64 `json:"uid,omitempty"` // 0: none
	// Viewer names a reader without a uid (a hashed IP, a device id): 1 to 64 printable
	// ASCII characters. With --read-window, one uid's or viewer's repeated reads of an item
	// count once per window.
	Viewer string `json:"viewer,omitempty"`
	// IdempotencyKey is sent as the Idempotency-Key header: 1 to 128 printable ASCII
	// characters. tallyd counts a key (per caller and item) once within 24 hours. "": the
	// client makes one for the call, sent on each of its attempts.
	IdempotencyKey string `json:"-"`
}

// ReadAccepted is the answer to [Client.RecordRead]: the read was taken and will be
// counted within about 100 ms (asynchronously).
type ReadAccepted struct {
	Accepted bool `json:"accepted"`
	// IdempotencyKey is the key the read was sent with (the caller's or the one made for
	// the call): sending it again within 24 hours counts nothing.
	IdempotencyKey string `json:"-"`
}

// Status is a probe's answer ("ok").
type Status struct {
	Status string `json:"status"`
}
