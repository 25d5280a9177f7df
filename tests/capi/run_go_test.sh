#!/bin/sh
# Runs `go test` in the Go module dir $1; exits 77 (ctest: skipped) when go is not installed.
if ! command -v go >/dev/null 2>&1; then
  echo "capi_go_test: SKIPPED: 'go' is not installed (apt-get install golang-go)"
  exit 77
fi
cd "$1" && exec go test -count=1 ./...
