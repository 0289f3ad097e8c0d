#!/usr/bin/env bash
# Runs every fuzz target for a short time each (FUZZTIME, default 20s):
# FSM command decoding and snapshot restore (fsm), gRPC request
# validation (brokerd), admin JSON decoding (brokerd/admin), token and
# tokens-file parsing (internal/auth). Seed corpora live in each
# package's testdata/fuzz/<Target>/ and run with every `go test`; a
# failure here leaves the failing input there too — commit it with the
# fix, so it becomes a regression test. Idempotent; exit 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-20s}
targets=(
  "./fsm FuzzDecode"
  "./fsm FuzzRestore"
  "./brokerd FuzzValidateRequests"
  "./brokerd/admin FuzzDecodeJSON"
  "./internal/auth FuzzAuthenticate"
  "./internal/auth FuzzParseTokens"
)
failed=()
for e in "${targets[@]}"; do
  set -- $e
  echo "== fuzz $2 ($1) for $t"
  if ! go test -run '^$' -fuzz "^$2\$" -fuzztime "$t" "$1" 2>&1 | tail -n 20; then
    failed+=("$2")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (failing inputs written under <package>/testdata/fuzz/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran $t each, no failure"
