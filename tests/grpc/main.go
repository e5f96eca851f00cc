// grpccall calls tally's gRPC server through the client that protoc-gen-go-grpc generates
// from api/intr/v1/intr.proto (intrv1, made by generate.sh), as a service built on the
// course's design calls its interactive service, and prints the outcome as one JSON line:
//
//	{"code":"OK","message":"","response":{...}}
//
// response is the answer in protobuf's JSON mapping with every field shown (proto names;
// map keys are strings, int64 values strings). The end-to-end tests (tests/e2e/test_grpc.py)
// compare it with the HTTP API's answer for the same item and user.
//
//	grpccall [-token T] [-idempotency-key K] [-md KEY=VALUE]... [-tls-ca PATH] [-n N] ADDR METHOD REQUEST
//
// REQUEST is the request, or - to read it from the standard input.
//
// METHOD is one of IncrReadCnt, Like, CancelLike, Collect, Get, GetByIds, or Health for
// grpc.health.v1.Health/Check; or a full path (/pkg.Service/Method), in which case the
// request is hex bytes sent as they are (for malformed messages and unknown methods) and
// the response is shown as hex. With -n N the call is made N times on one connection and
// the last outcome printed. Exit status: 0 whatever the call's code (it is in the output),
// 2 for bad arguments, 1 when no connection could be made.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	intrv1 "tally/tests/grpc/intrv1"
)

// rawCodec sends and receives bytes as they are, for calls the generated client cannot make.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "grpccall: %s\n", msg)
	os.Exit(2)
}

// call makes one call of method with the request in reqJSON.
func call(ctx context.Context, conn *grpc.ClientConn, method, reqJSON string) (proto.Message, error) {
	c := intrv1.NewInteractiveServiceClient(conn)
	decode := func(m proto.Message) proto.Message {
		if err := protojson.Unmarshal([]byte(reqJSON), m); err != nil {
			usage(fmt.Sprintf("request for %s: %v", method, err))
		}
		return m
	}
	switch method {
	case "IncrReadCnt":
		return c.IncrReadCnt(ctx, decode(&intrv1.IncrReadCntRequest{}).(*intrv1.IncrReadCntRequest))
	case "Like":
		return c.Like(ctx, decode(&intrv1.LikeRequest{}).(*intrv1.LikeRequest))
	case "CancelLike":
		return c.CancelLike(ctx, decode(&intrv1.CancelLikeRequest{}).(*intrv1.CancelLikeRequest))
	case "Collect":
		return c.Collect(ctx, decode(&intrv1.CollectRequest{}).(*intrv1.CollectRequest))
	case "Get":
		return c.Get(ctx, decode(&intrv1.GetRequest{}).(*intrv1.GetRequest))
	case "GetByIds":
		return c.GetByIds(ctx, decode(&intrv1.GetByIdsRequest{}).(*intrv1.GetByIdsRequest))
	case "Health":
		h := grpc_health_v1.NewHealthClient(conn)
		return h.Check(ctx, decode(&grpc_health_v1.HealthCheckRequest{}).(*grpc_health_v1.HealthCheckRequest))
	}
	usage("unknown method " + method)
	return nil, nil
}

func main() {
	token := flag.String("token", "", "bearer credential sent as authorization metadata")
	idem := flag.String("idempotency-key", "", "idempotency-key metadata")
	caPath := flag.String("tls-ca", "", "connect with TLS, trusting this CA (PEM)")
	n := flag.Int("n", 1, "calls to make on one connection")
	var extra []string
	flag.Func("md", "KEY=VALUE metadata appended to the call (may repeat)", func(v string) error {
		extra = append(extra, v)
		return nil
	})
	flag.Parse()
	if flag.NArg() != 3 || *n < 1 {
		usage("usage: grpccall [-token T] [-idempotency-key K] [-tls-ca PATH] [-n N] ADDR METHOD REQUEST_JSON")
	}
	addr, method, reqJSON := flag.Arg(0), flag.Arg(1), flag.Arg(2)
	if reqJSON == "-" { // from stdin: a request too long for an argument
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			usage(err.Error())
		}
		reqJSON = strings.TrimSpace(string(b))
	}

	creds := insecure.NewCredentials()
	if *caPath != "" {
		pem, err := os.ReadFile(*caPath)
		if err != nil {
			usage(err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			usage("no certificate in " + *caPath)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpccall: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md := metadata.MD{}
	if *token != "" {
		md.Set("authorization", "Bearer "+*token)
	}
	if *idem != "" {
		md.Set("idempotency-key", *idem)
	}
	for _, kv := range extra {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			usage("-md wants KEY=VALUE")
		}
		md.Append(k, v)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)

	if strings.HasPrefix(method, "/") {
		in, err := hex.DecodeString(reqJSON)
		if err != nil {
			usage("request: " + err.Error())
		}
		var out []byte
		err = conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
		line, _ := json.Marshal(map[string]any{"code": status.Code(err).String(),
			"message": status.Convert(err).Message(), "response": hex.EncodeToString(out)})
		fmt.Println(string(line))
		return
	}
	var resp proto.Message
	for i := 0; i < *n; i++ {
		resp, err = call(ctx, conn, method, reqJSON)
	}
	out := map[string]any{"code": status.Code(err).String(), "message": status.Convert(err).Message()}
	if err == nil {
		b, _ := protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}.Marshal(resp)
		out["response"] = json.RawMessage(b)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}
