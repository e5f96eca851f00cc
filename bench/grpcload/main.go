// grpcload is the gRPC rows' load generator in bench/run.py: what wrk is to the HTTP rows.
// It opens -conns connections to ADDR, keeps -inflight calls in flight across them (call i
// on connection i % conns) for -d, and prints one line in the form of the HTTP rows' wrk
// report, so that run.py reads both the same way:
//
//	GRPC_JSON {"requests":N,"seconds":S,"errors":E,"non2xx":X,"p50_ms":..,"p99_ms":..,"p999_ms":..}
//
// requests counts the calls that came back within the run, whatever their code; errors the
// calls that ended without the server's answer (Unavailable, DeadlineExceeded, Canceled: a
// connection lost or refused), non2xx those the server answered with another code than OK.
// Latency is from the call's start to its answer, over every call of the run.
//
//	grpcload [-conns 32] [-inflight 32] [-d 10s] ADDR Get|Like
//
// Get asks -biz/-id for user -uid (the HTTP row's GET /v1/items/{biz}/{id}?uid=). Like
// alternates Like and CancelLike for a user in 1..100000 on an item in 1..10000 drawn from
// a generator seeded with 7, as the HTTP row's wrk script alternates PUT and DELETE. The
// calls go through the client protoc-gen-go-grpc generates (intrv1, made by generate.sh).
// Exit status: 0 after a run, 2 for bad arguments, 1 when a connection never became ready.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	intrv1 "tally/bench/grpcload/intrv1"
)

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "grpcload: %s\n", msg)
	os.Exit(2)
}

// worker keeps one call in flight until stop; its latencies stay its own until the end.
type worker struct {
	client intrv1.InteractiveServiceClient
	call   func(ctx context.Context, c intrv1.InteractiveServiceClient, n int) error
	ms     []float64
	errors int
	non2xx int
}

func (w *worker) run(stop *atomic.Bool, wg *sync.WaitGroup) {
	defer wg.Done()
	for n := 0; !stop.Load(); n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		err := w.call(ctx, w.client, n)
		w.ms = append(w.ms, float64(time.Since(t0).Nanoseconds())/1e6)
		cancel()
		switch status.Code(err) {
		case codes.OK:
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			w.errors++
		default:
			w.non2xx++
		}
	}
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)) * q)
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func main() {
	conns := flag.Int("conns", 32, "connections")
	inflight := flag.Int("inflight", 32, "calls in flight across the connections")
	dur := flag.Duration("d", 10*time.Second, "how long to keep calls in flight")
	biz := flag.String("biz", "article", "Get: the item's biz")
	id := flag.Int64("id", 7, "Get: the item's id")
	uid := flag.Int64("uid", 42, "Get: the user asking")
	flag.Parse()
	if flag.NArg() != 2 || *conns < 1 || *inflight < 1 || *dur <= 0 {
		usage("usage: grpcload [-conns N] [-inflight N] [-d DURATION] ADDR Get|Like")
	}
	addr, method := flag.Arg(0), flag.Arg(1)

	var call func(ctx context.Context, c intrv1.InteractiveServiceClient, n int) error
	var rng *rand.Rand
	var rngMu sync.Mutex
	switch method {
	case "Get":
		req := &intrv1.GetRequest{Biz: *biz, BizId: *id, Uid: *uid}
		call = func(ctx context.Context, c intrv1.InteractiveServiceClient, _ int) error {
			_, err := c.Get(ctx, req)
			return err
		}
	case "Like":
		rng = rand.New(rand.NewSource(7))
		call = func(ctx context.Context, c intrv1.InteractiveServiceClient, n int) error {
			rngMu.Lock()
			u, item := rng.Int63n(100000)+1, rng.Int63n(10000)+1
			rngMu.Unlock()
			if n%2 == 0 {
				_, err := c.Like(ctx, &intrv1.LikeRequest{Biz: "article", BizId: item, Uid: u})
				return err
			}
			_, err := c.CancelLike(ctx, &intrv1.CancelLikeRequest{Biz: "article", BizId: item, Uid: u})
			return err
		}
	default:
		usage("unknown method " + method + " (Get or Like)")
	}

	// Every connection ready before the clock starts, as wrk connects before it counts.
	clients := make([]intrv1.InteractiveServiceClient, *conns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			usage(err.Error())
		}
		defer conn.Close()
		conn.Connect()
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			if !conn.WaitForStateChange(ctx, s) {
				fmt.Fprintf(os.Stderr, "grpcload: %s: no connection within 10 s\n", addr)
				os.Exit(1)
			}
		}
		clients[i] = intrv1.NewInteractiveServiceClient(conn)
	}
	cancel()

	workers := make([]*worker, *inflight)
	var stop atomic.Bool
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range workers {
		workers[i] = &worker{client: clients[i%*conns], call: call}
		wg.Add(1)
		go workers[i].run(&stop, &wg)
	}
	time.Sleep(*dur)
	stop.Store(true)
	wg.Wait()
	seconds := time.Since(t0).Seconds()

	var all []float64
	errors, non2xx := 0, 0
	for _, w := range workers {
		all = append(all, w.ms...)
		errors += w.errors
		non2xx += w.non2xx
	}
	sort.Float64s(all)
	out, _ := json.Marshal(map[string]any{"requests": len(all), "seconds": seconds,
		"errors": errors, "non2xx": non2xx, "p50_ms": percentile(all, 0.50),
		"p99_ms": percentile(all, 0.99), "p999_ms": percentile(all, 0.999)})
	fmt.Printf("GRPC_JSON %s\n", out)
}
