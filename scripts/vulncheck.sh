#!/usr/bin/env bash
# govulncheck (golang.org/x/vuln) over the module, for `make lint` and CI.
#
# The vulnerability database is not fetched from its web service (not
# reachable here or in CI): it is built from the golang.org/x/vulndb
# module — the database's own source, with every report as an OSV file
# under data/osv — which the Go module proxy serves like any module, using
# that module's cmd/indexdb, into $RAFTQ_VULNDB_DIR (default tmp/vulndb),
# once per version. Idempotent; later runs reuse the database.
#
# Exit status: 1 when the code calls a vulnerable function of a module we
# require (fix: `go get module@fixed`), and likewise when it reaches a
# vulnerable function of the standard library (fix: a newer toolchain line
# in go.mod and the Makefile); RAFTQ_VULNCHECK_STDLIB=warn turns the latter
# into warnings. When the tools or the database cannot be
# obtained (no module proxy), it prints SKIPPED with the reason and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
VULN_VERSION=${VULN_VERSION:-v1.9.0}
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
dbroot=${RAFTQ_VULNDB_DIR:-$root/tmp/vulndb}
stdlib=${RAFTQ_VULNCHECK_STDLIB:-fail}

skip() { echo "vulncheck: SKIPPED: $*" >&2; exit 0; }
command -v jq >/dev/null || skip "jq is not installed (apt-get install jq)"

# Outside the module, so nothing here touches go.mod or go.sum.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gobin=$(go env GOPATH)/bin
if ! "$gobin/govulncheck" -version 2>/dev/null | grep -q "govulncheck@$VULN_VERSION"; then
  (cd "$work" && GOFLAGS=-mod=mod go install "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION") \
    || skip "cannot install govulncheck $VULN_VERSION through the module proxy"
fi

db=$dbroot/$VULNDB_VERSION
if [ ! -s "$db/index/db.json" ]; then
  src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | jq -r .Dir) \
    || skip "cannot download golang.org/x/vulndb@$VULNDB_VERSION through the module proxy"
  [ -d "$src/data/osv" ] || skip "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv"
  (cd "$work" && GOFLAGS=-mod=mod go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$work/db") \
    || skip "cannot build the database with golang.org/x/vulndb/cmd/indexdb"
  mkdir -p "$dbroot"
  rm -rf "$db"
  mv "$work/db" "$db"
fi
echo "vulncheck: govulncheck $VULN_VERSION, database golang.org/x/vulndb@$VULNDB_VERSION ($(find "$db/ID" -name "*.json" | wc -l) reports)"

out=$work/findings.json
"$gobin/govulncheck" -db "file://$db" -format json ./... >"$out"
# One line per vulnerability the code reaches: id, module, fixed version.
called=$(jq -r 'select(.finding) | .finding | select(.trace[0].function != null)
  | [.osv, .trace[0].module, (.fixed_version // "none")] | @tsv' "$out" | sort -u)
notcalled=$(jq -r 'select(.finding) | .finding | [.osv, .trace[0].module] | @tsv' "$out" | sort -u | wc -l)
mods=$(printf '%s\n' "$called" | awk -F'\t' '$1 != "" && $2 != "stdlib"')
std=$(printf '%s\n' "$called" | awk -F'\t' '$1 != "" && $2 == "stdlib"')
status=0
if [ -n "$std" ]; then
  echo "vulncheck: the standard library of $(go env GOVERSION) has vulnerabilities this code reaches (fix: a newer Go toolchain):"
  printf '%s\n' "$std" | awk -F'\t' '{printf "  %s  fixed in go%s\n", $1, substr($3, 2)}'
  if [ "$stdlib" = fail ]; then status=1; else echo "vulncheck: (warnings only, as RAFTQ_VULNCHECK_STDLIB=warn asks)"; fi
fi
if [ -n "$mods" ]; then
  echo "vulncheck: FAILED: required modules have vulnerabilities this code reaches:"
  printf '%s\n' "$mods" | awk -F'\t' '{printf "  %s  %s  fixed in %s  (go get %s@%s)\n", $1, $2, $3, $2, $3}'
  status=1
fi
[ -n "$called" ] || echo "vulncheck: no known vulnerability is reached by the code ($notcalled findings in dependencies that it does not call)"
exit $status
