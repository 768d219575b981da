#!/usr/bin/env bash
# A CPU profile of the server during one pm-bench phase, taken with perf.
#   bench/profile.sh reads|export|ingest [SCALE] [SECONDS]
# reads:  64 streams of GetPartnershipReport from a warm cache (perf attaches after the
#         warm-up and records SECONDS, default 5, of the 10 s report run).
# export: one ExportReports of every partnership, from a cold start to the end.
# ingest: one IngestRecords stream into SQLite, batches of 1,000, start to end.
# The data set is kept under bench/work/<scale>/dataset between runs (--reuse-dataset),
# so only the first profile of a scale loads it. Prints where the server's samples fell,
# by shared object and by symbol; perf.data stays in bench/work/profile-<phase>-<scale>.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: bench/profile.sh reads|export|ingest [SCALE] [SECONDS]}
scale=${2:-medium}
seconds=${3:-5}
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
cargo build --release --quiet --bins
bench=target/release/pm-bench
out=bench/work/profile-$phase-$scale
mkdir -p "$out"
common=(--scale "$scale" --runs 1 --reuse-dataset --markdown none --results-dir "$out" --postgres-url none)

case $phase in
  reads) extra=(--phases reads --streams 64 --duration-secs 10); trigger='warmed' ;;
  export) extra=(--phases export); trigger='server pid' ;;
  ingest) extra=(--phases ingest); trigger='server pid' ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
if [ "$phase" != ingest ]; then
  # Loads the data set now if it is not there, so that the server perf attaches to
  # below is the phase's own.
  "$bench" "${common[@]}" --phases startup >/dev/null 2>&1
fi

log=$out/pm-bench.log
"$bench" "${common[@]}" "${extra[@]}" >/dev/null 2>"$log" &
bench_pid=$!
trap 'kill "$bench_pid" 2>/dev/null || true' EXIT
for _ in $(seq 6000); do
  grep -qE "$trigger" "$log" && break
  kill -0 "$bench_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done
pid=$(sed -n 's/.*server pid \([0-9]*\).*/\1/p' "$log" | tail -n 1)
[ -n "$pid" ] || { echo "no server pid in $log" >&2; exit 1; }
if [ "$phase" = reads ]; then
  perf record -F 999 -g -p "$pid" -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.log"
else
  # Ends when the server exits at the end of the run.
  perf record -F 999 -g -p "$pid" -o "$out/perf.data" 2>"$out/perf.log"
fi
wait "$bench_pid"
trap - EXIT

echo "== $phase at $scale: pm-bench said"
grep -v 'server pid' "$log" | sed 's/^/  /'
echo "== server samples by shared object"
perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | head -n 8
echo "== server samples by symbol (>= 1%)"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 1 2>/dev/null \
  | grep -E '^ +[0-9]' | cut -c1-150 | head -n 40
