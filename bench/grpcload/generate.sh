#!/usr/bin/env bash
# Generates the Go client of api/intr/v1/intr.proto into intrv1/ (not committed) with the
# course's tools, pinned as tests/grpc/generate.sh pins them (protoc-gen-go v1.36.12,
# protoc-gen-go-grpc v1.5.1, from the Go module proxy): the load generator calls tallyd
# through the same generated code a course service would.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
export GOPATH=$root/.cache/go GOMODCACHE=$root/.cache/go/mod GOCACHE=$root/.cache/go/build
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=$root/.cache/go/bin
command -v protoc >/dev/null || { echo "generate.sh: protoc is missing (scripts/deps.sh build)" >&2; exit 2; }
[ -x "$GOBIN/protoc-gen-go" ] || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
[ -x "$GOBIN/protoc-gen-go-grpc" ] || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
pkg=tally/bench/grpcload/intrv1
rm -rf intrv1 && mkdir -p intrv1
PATH=$GOBIN:$PATH protoc -I"$root/api" \
  --go_out=intrv1 --go_opt=paths=source_relative --go_opt=Mintr/v1/intr.proto=$pkg \
  --go-grpc_out=intrv1 --go-grpc_opt=paths=source_relative --go-grpc_opt=Mintr/v1/intr.proto=$pkg \
  intr/v1/intr.proto
mv intrv1/intr/v1/*.go intrv1/ && rm -rf intrv1/intr
