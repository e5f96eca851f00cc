package tally_test

// These tests speak to a real tallyd, never to a stand-in: TestMain starts the binary named
// by $TALLYD on a free loopback port with a SQLite file in a temporary directory (the
// embedded default), or uses the one at $TALLY_URL (with $TALLY_TOKEN, if it needs one).
// Tests that need a tallyd configured their own way (API keys, rate limits) start one more
// and need $TALLYD. Without either variable every test skips, saying so.
//
// Names are made unique per run of each test (biz "go<hex>_..." and uids from a random
// base), so that a shared tallyd at $TALLY_URL keeps working run after run. Reads are counted
// asynchronously: a test waits for a count with a deadline, and proves that nothing more is
// coming with a fence (a later read of the same item, which lands after the earlier ones).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tally "github.com/tally/tally/clients/go"
)

var (
	baseURL   string // the tallyd the tests share; "" when there is none
	tallydBin string // $TALLYD: for tests that start their own
)

const skipReason = "set TALLYD to a tallyd binary (or TALLY_URL to a running tallyd): " +
	"these tests speak to a real one"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tallydBin = os.Getenv("TALLYD")
	if u := os.Getenv("TALLY_URL"); u != "" {
		baseURL = u
		return m.Run()
	}
	if tallydBin == "" {
		// The Example needs a tallyd and cannot skip: run the tests alone, which skip.
		fmt.Println("tally: " + skipReason)
		if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
			_ = flag.Set("test.run", "^Test")
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tally-go-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := spawn(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	baseURL = s.url
	os.Setenv("TALLY_URL", baseURL) // where the Example finds it
	code := m.Run()
	if err := s.stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}

// ---------------------------------------------------------------- tallyd processes

type server struct {
	cmd  *exec.Cmd
	url  string
	log  string // its stdout and stderr
	done chan error
}

// spawn starts $TALLYD with flags args on a free port and a SQLite file in dir, and waits
// until /readyz answers 200. Its configuration comes from flags only: TALLY_* variables of
// this process are not passed on.
func spawn(dir string, args ...string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.CreateTemp(dir, "tallyd-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	db := filepath.Join(dir, "t-"+strings.NewReplacer(":", "_", ".", "_").Replace(addr)+".db")
	argv := append([]string{"--listen", addr, "--store", "sqlite:" + db, "--cache", "none"},
		args...)
	cmd := exec.Command(tallydBin, argv...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALLY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", tallydBin, err)
	}
	s := &server{cmd: cmd, url: "http://" + addr, log: logf.Name(), done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("tallyd exited (%v) before it was ready:\n%s", err, s.output())
		default:
		}
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.cmd.Process.Kill()
			<-s.done
			return nil, fmt.Errorf("tallyd was not ready within 30 s:\n%s", s.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) output() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// stop sends SIGTERM and checks a clean exit: status 0, no sanitizer report in the log.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("tallyd did not stop within 30 s of SIGTERM:\n%s", s.output())
	}
	out := s.output()
	if err != nil || strings.Contains(out, "ERROR: AddressSanitizer") ||
		strings.Contains(out, "runtime error") {
		return fmt.Errorf("tallyd stopped badly (%v):\n%s", err, out)
	}
	return nil
}

// own starts a tallyd of the test's own, stopped (and checked) when the test ends.
func own(t *testing.T, args ...string) *server {
	t.Helper()
	if tallydBin == "" {
		t.Skip("set TALLYD to a tallyd binary: this test starts one with flags of its own")
	}
	s, err := spawn(t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// ---------------------------------------------------------------- helpers

func shared(t *testing.T) {
	t.Helper()
	if baseURL == "" {
		t.Skip(skipReason)
	}
}

// client is a client of the shared tallyd (opts after the token, so they may replace it).
func client(t *testing.T, opts ...tally.Option) *tally.Client {
	t.Helper()
	shared(t)
	return clientOf(t, baseURL, append([]tally.Option{tally.WithToken(os.Getenv("TALLY_TOKEN"))},
		opts...)...)
}

func clientOf(t *testing.T, url string, opts ...tally.Option) *tally.Client {
	t.Helper()
	c, err := tally.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// names are the biz and uids of one test, fresh for each run of it (go test -count=N, a
// shared tallyd at TALLY_URL): biz "go<6 hex>_NAME", uids from a random base.
type names struct {
	tag  string
	base int64
}

func fresh(t *testing.T) names {
	var r [7]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	return names{tag: hex.EncodeToString(r[:3]),
		base: int64(binary.BigEndian.Uint32(r[3:])) * 1_000_000}
}

func (n names) biz(name string) string { return "go" + n.tag + "_" + name }

func (n names) uid(k int64) int64 { return n.base + k }

// try holds a call's two results; ok(t) fails the test on the error, else gives the value:
// st := try(c.GetItem(ctx, b, 1, 0)).ok(t).
func try[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) ok(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

// apiError is err's *tally.Error; the test fails without one.
func apiError(t *testing.T, err error) *tally.Error {
	t.Helper()
	var e *tally.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *tally.Error, got %T %v", err, err)
	}
	return e
}

func wantError(t *testing.T, err error, status int, code string) *tally.Error {
	t.Helper()
	e := apiError(t, err)
	if e.StatusCode != status || e.Code != code || e.Message == "" || e.RequestID == "" {
		t.Fatalf("want %d %s with a message and a request id, got %+v", status, code, e)
	}
	return e
}

// readsLanded waits until the item's read_cnt reaches want, then makes sure no more reads
// are on their way: one more read of the same item (a fence, queued after them) must bring
// the count to exactly want+1.
func readsLanded(t *testing.T, c *tally.Client, b string, id, want int64) {
	t.Helper()
	ctx := ctxOf(t)
	try(c.RecordRead(ctx, b, id, nil)).ok(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := try(c.GetItem(ctx, b, id, 0)).ok(t)
		if st.ReadCnt >= want+1 {
			if st.ReadCnt != want+1 {
				t.Fatalf("%s/%d: read_cnt %d, want %d (and 1 for the fence)", b, id,
					st.ReadCnt-1, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%d: read_cnt %d after 20 s, want %d", b, id, st.ReadCnt-1, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is a RoundTripper over a real transport that records each attempt's
// Idempotency-Key, and loses the answers of the first `lose` attempts after the server has
// given them whole: what a connection cut on the way back does.
type recorder struct {
	next http.RoundTripper
	lose int

	mu   sync.Mutex
	keys []string
}

func newRecorder(lose int) *recorder {
	return &recorder{next: http.DefaultTransport.(*http.Transport).Clone(), lose: lose}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
	n := len(r.keys)
	r.mu.Unlock()
	resp, err := r.next.RoundTrip(req)
	if err == nil && n <= r.lose {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errors.New("test: the answer was lost on its way back")
	}
	return resp, err
}

func (r *recorder) attempts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

// fast retries quickly, so that tests of giving up take milliseconds.
var fast = tally.RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond,
	MaxDelay: 20 * time.Millisecond}

// deadPort is a loopback address nothing listens on.
func deadPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// ---------------------------------------------------------------- tests

func TestNewRefusesBadArguments(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://h/", "http://", "http://h/?a=1",
		"http://u:p@h/", "http://h/#x"} {
		if _, err := tally.New(u); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
	for _, tok := range []string{"a b", "a\nb", "ключ"} {
		if _, err := tally.New("http://127.0.0.1:1", tally.WithToken(tok)); err == nil {
			t.Errorf("WithToken(%q): no error", tok)
		}
	}
	if _, err := tally.New("https://api.example.com/tally/", tally.WithToken("k.-_~+/="),
		tally.WithHTTPClient(nil), tally.WithRetry(tally.NoRetry)); err != nil {
		t.Error(err)
	}
}

func TestProbesMetricsAndPage(t *testing.T) {
	c, ctx := client(t), ctxOf(t)
	for name, probe := range map[string]func(context.Context) (*tally.Status, error){
		"health": c.GetHealth, "liveness": c.GetLiveness, "readiness": c.GetReadiness} {
		if st := try(probe(ctx)).ok(t); st.Status != "ok" {
			t.Errorf("%s: %+v", name, st)
		}
	}
	if m := try(c.GetMetrics(ctx)).ok(t); !strings.Contains(m, "\ntally_http_requests_total{") {
		t.Errorf("metrics without tally_http_requests_total:\n%.500s", m)
	}
	if p := try(c.GetOperatorPage(ctx)).ok(t); !strings.HasPrefix(strings.ToLower(p), "<!doctype html>") {
		t.Errorf("the operator's page is not HTML: %.200s", p)
	}
}

func TestReadsAreCounted(t *testing.T) {
	n := fresh(t)
	c, ctx, b := client(t), ctxOf(t), n.biz("reads")
	keys := map[string]bool{}
	for _, req := range []*tally.RecordReadRequest{nil, {UID: n.uid(1)}, {Viewer: "9f2c-device"}} {
		r := try(c.RecordRead(ctx, b, 7, req)).ok(t)
		if !r.Accepted || len(r.IdempotencyKey) != 32 || keys[r.IdempotencyKey] {
			t.Fatalf("%+v: want accepted with a new 32-digit key", r)
		}
		keys[r.IdempotencyKey] = true
	}
	readsLanded(t, c, b, 7, 3) // 4 with the fence

	st := try(c.GetItem(ctx, b, 7, n.uid(1))).ok(t)
	want := tally.ItemState{Biz: b, ID: 7, ReadCnt: 4}
	if *st != want {
		t.Fatalf("got %+v, want %+v", *st, want)
	}
	items := try(c.GetItems(ctx, b, []int64{7, 8, 7}, 0)).ok(t).Items
	if len(items) != 3 || items[0] != want || items[2] != want ||
		items[1] != (tally.ItemState{Biz: b, ID: 8}) {
		t.Fatalf("GetItems: %+v", items)
	}

	now := time.Now()
	for _, bucket := range []tally.Bucket{tally.BucketHour, tally.BucketDay} {
		h := try(c.GetHistory(ctx, b, 7, tally.ReadCnt, bucket,
			&tally.HistoryOptions{From: now.Add(-48 * time.Hour), To: now.Add(time.Minute)})).ok(t)
		var sum int64
		for _, p := range h.Points {
			if p.Time().After(now) {
				t.Errorf("%s point in the future: %+v", bucket, p)
			}
			sum += p.N
		}
		if sum != 4 {
			t.Errorf("%s history sums to %d, want 4: %+v", bucket, sum, h.Points)
		}
	}
	if h := try(c.GetHistory(ctx, b, 7, tally.LikeCnt, tally.BucketHour, nil)).ok(t); len(h.Points) != 0 {
		t.Errorf("like history of an item nobody liked: %+v", h.Points)
	}
}

func TestCallersIdempotencyKeyCountsOnce(t *testing.T) {
	n := fresh(t)
	c, ctx, b := client(t), ctxOf(t), n.biz("ikey")
	key := "order-" + n.tag + "-1"
	for range 2 {
		r := try(c.RecordRead(ctx, b, 1, &tally.RecordReadRequest{UID: n.uid(2), IdempotencyKey: key})).ok(t)
		if !r.Accepted || r.IdempotencyKey != key {
			t.Fatalf("%+v: want accepted under the caller's key", r)
		}
	}
	readsLanded(t, c, b, 1, 1)
}

// The read's answer is lost after tallyd took it; the client sends it again with the same
// Idempotency-Key, and tallyd counts it once. A new key per attempt would count it twice.
func TestRetriedReadCountsOnce(t *testing.T) {
	n := fresh(t)
	rec := newRecorder(1)
	c, ctx, b := client(t, tally.WithHTTPClient(rec.client())), ctxOf(t), n.biz("retried")
	r := try(c.RecordRead(ctx, b, 1, &tally.RecordReadRequest{UID: n.uid(3)})).ok(t)
	keys := rec.attempts()
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] || r.IdempotencyKey != keys[0] {
		t.Fatalf("attempts' keys %q, answer's %q: want two attempts with the one key",
			keys, r.IdempotencyKey)
	}
	readsLanded(t, client(t), b, 1, 1)
}

func TestLikeUnlike(t *testing.T) {
	n := fresh(t)
	c, ctx, b, u := client(t), ctxOf(t), n.biz("likes"), n.uid(4)
	for range 2 { // idempotent: the second changes nothing
		st := try(c.Like(ctx, u, b, 5)).ok(t)
		if *st != (tally.ItemState{Biz: b, ID: 5, LikeCnt: 1, Liked: true}) {
			t.Fatalf("Like: %+v", st)
		}
	}
	try(c.Like(ctx, n.uid(5), b, 5)).ok(t)
	if st := try(c.GetItem(ctx, b, 5, u)).ok(t); st.LikeCnt != 2 || !st.Liked {
		t.Fatalf("GetItem after two users' likes: %+v", st)
	}
	if st := try(c.GetItem(ctx, b, 5, n.uid(6))).ok(t); st.LikeCnt != 2 || st.Liked {
		t.Fatalf("GetItem for a user who does not like it: %+v", st)
	}
	page := try(c.ListLikes(ctx, u, b, nil)).ok(t)
	if len(page.Items) != 1 || page.Items[0].ID != 5 || page.Items[0].Biz != b ||
		page.NextCursor != nil || time.Since(page.Items[0].Time()) > time.Minute {
		t.Fatalf("ListLikes: %+v", page)
	}
	for range 2 {
		st := try(c.Unlike(ctx, u, b, 5)).ok(t)
		if *st != (tally.ItemState{Biz: b, ID: 5, LikeCnt: 1}) {
			t.Fatalf("Unlike: %+v", st)
		}
	}
	if page := try(c.ListLikes(ctx, u, b, nil)).ok(t); len(page.Items) != 0 || page.NextCursor != nil {
		t.Fatalf("ListLikes after the unlike: %+v", page)
	}
}

func TestListPages(t *testing.T) {
	n := fresh(t)
	c, ctx, b, u := client(t), ctxOf(t), n.biz("pages"), n.uid(7)
	for id := int64(1); id <= 5; id++ {
		try(c.Like(ctx, u, b, id)).ok(t)
		try(c.Collect(ctx, u, 9, b, id)).ok(t)
	}
	for name, list := range map[string]func(*tally.ListOptions) (*tally.ListPage, error){
		"likes":      func(o *tally.ListOptions) (*tally.ListPage, error) { return c.ListLikes(ctx, u, b, o) },
		"collection": func(o *tally.ListOptions) (*tally.ListPage, error) { return c.ListCollection(ctx, u, 9, o) },
	} {
		var got []int64
		opts := &tally.ListOptions{Limit: 2}
		for pages := 1; ; pages++ {
			p := try(list(opts)).ok(t)
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			if p.NextCursor == nil {
				break
			}
			if pages > 5 {
				t.Fatalf("%s: more pages than items", name)
			}
			opts.Cursor = *p.NextCursor
		}
		if fmt.Sprint(got) != "[5 4 3 2 1]" {
			t.Errorf("%s by pages of 2: %v, want the most recent first", name, got)
		}
	}
}

func TestCollectMoveUncollect(t *testing.T) {
	n := fresh(t)
	c, ctx, b, u := client(t), ctxOf(t), n.biz("collect"), n.uid(8)
	st := try(c.Collect(ctx, u, 1, b, 3)).ok(t)
	if *st != (tally.ItemState{Biz: b, ID: 3, CollectCnt: 1, Collected: true}) {
		t.Fatalf("Collect: %+v", st)
	}
	// Into another collection: moved, still counted once.
	if st := try(c.Collect(ctx, u, 2, b, 3)).ok(t); st.CollectCnt != 1 || !st.Collected {
		t.Fatalf("Collect into another: %+v", st)
	}
	ids := func(cid int64) string {
		var out []string
		for _, it := range try(c.ListCollection(ctx, u, cid, nil)).ok(t).Items {
			out = append(out, fmt.Sprintf("%s/%d", it.Biz, it.ID))
		}
		return strings.Join(out, ",")
	}
	if one, two := ids(1), ids(2); one != "" || two != b+"/3" {
		t.Fatalf("collections 1 and 2: %q and %q, want the item in 2 only", one, two)
	}
	// Out of a collection it is not in: nothing changes.
	if st := try(c.Uncollect(ctx, u, 1, b, 3)).ok(t); st.CollectCnt != 1 || !st.Collected {
		t.Fatalf("Uncollect from the wrong collection: %+v", st)
	}
	if st := try(c.Uncollect(ctx, u, 2, b, 3)).ok(t); *st != (tally.ItemState{Biz: b, ID: 3}) {
		t.Fatalf("Uncollect: %+v", st)
	}
	if two := ids(2); two != "" {
		t.Fatalf("collection 2 after the uncollect: %q", two)
	}
}

func TestGetItemsWithUID(t *testing.T) {
	n := fresh(t)
	c, ctx, b, u := client(t), ctxOf(t), n.biz("batch"), n.uid(9)
	try(c.Like(ctx, u, b, 1)).ok(t)
	try(c.Like(ctx, n.uid(10), b, 1)).ok(t)
	try(c.Collect(ctx, u, 4, b, 3)).ok(t)
	try(c.Like(ctx, n.uid(10), b, 2)).ok(t)
	got := try(c.GetItems(ctx, b, []int64{3, 2, 1, 3}, u)).ok(t).Items
	want := []tally.ItemState{
		{Biz: b, ID: 3, CollectCnt: 1, Collected: true},
		{Biz: b, ID: 2, LikeCnt: 1},
		{Biz: b, ID: 1, LikeCnt: 2, Liked: true},
		{Biz: b, ID: 3, CollectCnt: 1, Collected: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetItems with uid:\n got %+v\nwant %+v", got, want)
	}
	// Without a uid, the flags are false.
	for _, it := range try(c.GetItems(ctx, b, []int64{1, 3}, 0)).ok(t).Items {
		if it.Liked || it.Collected {
			t.Fatalf("flags without a uid: %+v", it)
		}
	}
}

func TestTopAndTrending(t *testing.T) {
	n := fresh(t)
	c, ctx, b := client(t), ctxOf(t), n.biz("top")
	likes := map[int64]int64{1: 2, 2: 3, 3: 1} // item: its number of likes
	for id, count := range likes {
		for k := range count {
			try(c.Like(ctx, n.uid(20+k), b, id)).ok(t)
		}
	}
	ranked := func(l *tally.ItemStates, cnt func(tally.ItemState) int64) string {
		var out []string
		for _, it := range l.Items {
			out = append(out, fmt.Sprintf("%d:%d", it.ID, cnt(it)))
		}
		return strings.Join(out, " ")
	}
	like := func(it tally.ItemState) int64 { return it.LikeCnt }
	window := func(it tally.ItemState) int64 { return it.WindowCnt }

	top := try(c.GetTop(ctx, b, tally.LikeCnt, &tally.TopOptions{Limit: 2})).ok(t)
	if got := ranked(top, like); got != "2:3 1:2" {
		t.Errorf("top 2 by likes: %s", got)
	}
	if got := ranked(top, window); got != "2:0 1:0" {
		t.Errorf("all-time top with window_cnt: %s", got)
	}
	if got := ranked(try(c.GetTop(ctx, b, tally.LikeCnt, nil)).ok(t), like); got != "2:3 1:2 3:1" {
		t.Errorf("top by likes: %s", got)
	}
	// Trending: the windows' sums; an unlike subtracts, and ties go by id. The 1h window
	// is the current UTC hour alone, so it is checked only when no hour began meanwhile.
	hour := time.Now().UTC().Truncate(time.Hour)
	try(c.Unlike(ctx, n.uid(20), b, 2)).ok(t)
	for range 2 {
		try(c.RecordRead(ctx, b, 3, nil)).ok(t)
	}
	readsLanded(t, c, b, 3, 2)
	windows := []tally.Window{tally.Window1h, tally.Window24h, tally.Window7d, tally.Window30d}
	for _, w := range windows {
		likes := ranked(try(c.GetTop(ctx, b, tally.LikeCnt, &tally.TopOptions{Window: w})).ok(t), window)
		reads := ranked(try(c.GetTop(ctx, b, tally.ReadCnt, &tally.TopOptions{Window: w})).ok(t), window)
		if w == tally.Window1h && !time.Now().UTC().Truncate(time.Hour).Equal(hour) {
			continue
		}
		if likes != "1:2 2:2 3:1" || reads != "3:3" {
			t.Errorf("trending over %s: by likes %q, by reads %q", w, likes, reads)
		}
	}
	collect := func(it tally.ItemState) int64 { return it.CollectCnt }
	if got := ranked(try(c.GetTop(ctx, b, tally.CollectCnt, nil)).ok(t), collect); got != "1:0 2:0 3:0" {
		t.Errorf("all-time top by collections, all tied at 0: %q", got)
	}
	if got := ranked(try(c.GetTop(ctx, b, tally.CollectCnt, &tally.TopOptions{Window: tally.Window24h})).ok(t), collect); got != "" {
		t.Errorf("trending by collections of a biz nobody collected: %q", got)
	}
}

func TestErrors(t *testing.T) {
	n := fresh(t)
	rec := newRecorder(0)
	c, ctx, b := client(t, tally.WithHTTPClient(rec.client())), ctxOf(t), n.biz("errors")

	_, err := c.GetItem(ctx, "Not-A-Biz", 1, 0)
	if e := wantError(t, err, 400, tally.CodeInvalidArgument); !strings.HasPrefix(e.Error(),
		"tally: 400 invalid_argument: ") {
		t.Fatalf("Error() does not start with the status and code: %q", e.Error())
	}
	if n := len(rec.attempts()); n != 1 {
		t.Fatalf("a 400 was sent %d times: a 4xx is never retried", n)
	}
	_, err = c.RecordRead(ctx, b, 1, &tally.RecordReadRequest{UID: n.uid(30), Viewer: "both"})
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.RecordRead(ctx, b, 1, &tally.RecordReadRequest{IdempotencyKey: strings.Repeat("k", 129)})
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.Like(ctx, n.uid(30), b, -1)
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.GetItems(ctx, b, nil, 0)
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.ListLikes(ctx, n.uid(30), b, &tally.ListOptions{Limit: 101})
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.ListCollection(ctx, n.uid(30), 1, &tally.ListOptions{Cursor: "x"})
	wantError(t, err, 400, tally.CodeInvalidArgument)
	_, err = c.GetTop(ctx, b, "votes", nil)
	wantError(t, err, 400, tally.CodeInvalidArgument)
	now := time.Now()
	_, err = c.GetHistory(ctx, b, 1, tally.ReadCnt, tally.BucketHour,
		&tally.HistoryOptions{From: now, To: now.Add(-time.Hour)})
	wantError(t, err, 400, tally.CodeInvalidArgument)
	// A biz with a '/' stays one (bad) segment instead of naming another route.
	_, err = c.Like(ctx, n.uid(30), b+"/1", 1)
	if e := apiError(t, err); e.StatusCode/100 != 4 {
		t.Fatalf("a biz with a slash: %+v", e)
	}
	// A key net/http cannot send is refused before anything is sent.
	before := len(rec.attempts())
	_, err = c.RecordRead(ctx, b, 1, &tally.RecordReadRequest{IdempotencyKey: "a\r\nX-Evil: 1"})
	var e *tally.Error
	if err == nil || errors.As(err, &e) || len(rec.attempts()) != before {
		t.Fatalf("a key with CR LF: %v, %d requests sent", err, len(rec.attempts())-before)
	}
	// None of the refused writes changed anything.
	if st := try(c.GetItem(ctx, b, 1, n.uid(30))).ok(t); *st != (tally.ItemState{Biz: b, ID: 1}) {
		t.Fatalf("after refused calls: %+v", st)
	}
	readsLanded(t, c, b, 1, 0)
}

func TestAPIKeys(t *testing.T) {
	n := fresh(t)
	dir := t.TempDir()
	tokens := map[string]string{}
	var lines []string
	for _, k := range []struct{ name, scopes string }{{"backend", "read,write"},
		{"reader", "read"}, {"prom", "metrics"}} {
		var r [32]byte
		rand.Read(r[:])
		tok := base64.RawURLEncoding.EncodeToString(r[:])
		sum := sha256.Sum256([]byte(tok))
		tokens[k.name] = tok
		lines = append(lines, k.name+" "+k.scopes+" "+hex.EncodeToString(sum[:]))
	}
	keys := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keys, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := own(t, "--keys", keys)
	ctx, b := ctxOf(t), n.biz("auth")
	rec := newRecorder(0)
	anon := clientOf(t, s.url, tally.WithHTTPClient(rec.client()))
	backend := clientOf(t, s.url, tally.WithToken(tokens["backend"]))
	reader := clientOf(t, s.url, tally.WithToken(tokens["reader"]))
	prom := clientOf(t, s.url, tally.WithToken(tokens["prom"]))

	_, err := anon.GetItem(ctx, b, 1, 0)
	wantError(t, err, 401, tally.CodeUnauthenticated)
	_, err = anon.RecordRead(ctx, b, 1, nil)
	wantError(t, err, 401, tally.CodeUnauthenticated)
	if n := len(rec.attempts()); n != 2 {
		t.Fatalf("%d requests for two calls: a 401 is never retried", n)
	}
	_, err = clientOf(t, s.url, tally.WithToken("not-a-key")).Like(ctx, 1, b, 1)
	wantError(t, err, 401, tally.CodeUnauthenticated)
	try(anon.GetHealth(ctx)).ok(t) // the probes are open
	try(anon.GetReadiness(ctx)).ok(t)

	_, err = reader.Like(ctx, 2, b, 1)
	wantError(t, err, 403, tally.CodePermissionDenied)
	_, err = reader.GetMetrics(ctx)
	wantError(t, err, 403, tally.CodePermissionDenied)
	_, err = prom.GetItem(ctx, b, 1, 0)
	wantError(t, err, 403, tally.CodePermissionDenied)

	if st := try(backend.Like(ctx, 1, b, 1)).ok(t); st.LikeCnt != 1 || !st.Liked {
		t.Fatalf("Like with the key: %+v", st)
	}
	try(backend.RecordRead(ctx, b, 1, nil)).ok(t)
	readsLanded(t, backend, b, 1, 1) // the anonymous read was not counted
	if st := try(reader.GetItem(ctx, b, 1, 2)).ok(t); st.LikeCnt != 1 || st.Liked {
		t.Fatalf("after the refused like: %+v", st)
	}
	if m := try(prom.GetMetrics(ctx)).ok(t); !strings.Contains(m, "tally_auth_token_refusals_total") {
		t.Fatalf("metrics with the metrics key: %.300s", m)
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	n := fresh(t)
	s := own(t, "--rate-limit", "uid=1/s:1")
	ctx, b := ctxOf(t), n.biz("limited")
	once := clientOf(t, s.url, tally.WithRetry(tally.NoRetry))

	try(once.Like(ctx, 1, b, 1)).ok(t)
	_, err := once.Like(ctx, 1, b, 1)
	e := wantError(t, err, 429, tally.CodeRateLimited)
	if e.RetryAfter < time.Second {
		t.Fatalf("Retry-After %v, want at least 1 s", e.RetryAfter)
	}

	// Retrying, the client waits Retry-After out and gets through.
	rec := newRecorder(0)
	patient := clientOf(t, s.url, tally.WithHTTPClient(rec.client()))
	try(once.Like(ctx, 2, b, 1)).ok(t)
	begun := time.Now()
	if st := try(patient.Like(ctx, 2, b, 1)).ok(t); st.LikeCnt != 2 {
		t.Fatalf("Like after the wait: %+v", st)
	}
	if n, took := len(rec.attempts()), time.Since(begun); n != 2 || took < time.Second {
		t.Fatalf("%d attempts in %v: want the 429, then a retry after Retry-After (1 s)", n, took)
	}

	// A deadline sooner than Retry-After: the 429 comes back at once, no wait.
	try(once.Like(ctx, 3, b, 1)).ok(t)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	begun = time.Now()
	_, err = patient.Like(short, 3, b, 1)
	wantError(t, err, 429, tally.CodeRateLimited)
	if took := time.Since(begun); took > 400*time.Millisecond {
		t.Fatalf("returned after %v: it waited for a retry past the deadline", took)
	}
	// A Retry-After longer than the policy's MaxRetryAfter is not waited for either.
	impatient := clientOf(t, s.url, tally.WithRetry(tally.RetryPolicy{MaxAttempts: 5,
		MaxRetryAfter: 100 * time.Millisecond}))
	try(once.Like(ctx, 4, b, 1)).ok(t)
	_, err = impatient.Like(ctx, 4, b, 1)
	wantError(t, err, 429, tally.CodeRateLimited)
}

// No answer at all: the read is tried MaxAttempts times, each with the same key.
func TestTransportErrorsRetriedThenReturned(t *testing.T) {
	rec := newRecorder(0)
	c := clientOf(t, deadPort(t), tally.WithHTTPClient(rec.client()), tally.WithRetry(fast))
	r, err := c.RecordRead(ctxOf(t), "article", 1, nil)
	var e *tally.Error
	var op *net.OpError
	if r != nil || err == nil || errors.As(err, &e) || !errors.As(err, &op) {
		t.Fatalf("got %v, %v: want the connection error", r, err)
	}
	keys := rec.attempts()
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatalf("attempts' keys: %q, want 3 with one key", keys)
	}
	// A probe is asked once.
	before := len(rec.attempts())
	if _, err := c.GetReadiness(ctxOf(t)); err == nil || len(rec.attempts()) != before+1 {
		t.Fatalf("readiness of nothing: %v after %d attempts", err, len(rec.attempts())-before)
	}
}

func TestContextBoundsTheCall(t *testing.T) {
	rec := newRecorder(0)
	patient := tally.RetryPolicy{MaxAttempts: 1000, BaseDelay: 20 * time.Millisecond,
		MaxDelay: 50 * time.Millisecond}
	c := clientOf(t, deadPort(t), tally.WithHTTPClient(rec.client()), tally.WithRetry(patient))

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Like(canceled, 1, "article", 1); !errors.Is(err, context.Canceled) ||
		len(rec.attempts()) != 0 {
		t.Fatalf("a canceled context: %v after %d attempts", err, len(rec.attempts()))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begun := time.Now()
	_, err := c.RecordRead(ctx, "article", 1, nil)
	took := time.Since(begun)
	var op *net.OpError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &op) {
		t.Fatalf("want the deadline and the last attempt's error, got %v", err)
	}
	if n := len(rec.attempts()); n < 2 || n >= 1000 || took > 2*time.Second {
		t.Fatalf("%d attempts in %v: want retries until the deadline, then a stop", n, took)
	}
}
