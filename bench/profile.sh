#!/usr/bin/env bash
# A CPU profile of the server during one pm-bench phase, taken with perf.
#   bench/profile.sh reads|export|ingest|ingest-postgres [SCALE] [SECONDS]
# reads:  64 streams of GetPartnershipReport from a warm cache (perf attaches after the
#         warm-up and records SECONDS, default 5, of the 10 s report run).
# export: one ExportReports of every partnership, from a cold start to the end.
# ingest: one IngestRecords stream into SQLite, batches of 1,000, start to end.
# ingest-postgres: one IngestRecords stream into PostgreSQL, batches of 1,000; the
#         whole machine is sampled for SECONDS once the stream's server starts (the
#         work is split between the server and PostgreSQL's backend), then reported
#         by process and by PostgreSQL's symbols. Needs PostgreSQL on this machine.
# The data set is kept under bench/work/<scale>/dataset between runs (--reuse-dataset),
# so only the first profile of a scale loads it. Prints where the server's samples fell,
# by shared object and by symbol; perf.data stays in bench/work/profile-<phase>-<scale>.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: bench/profile.sh reads|export|ingest|ingest-postgres [SCALE] [SECONDS]}
scale=${2:-medium}
seconds=${3:-5}
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
cargo build --release --quiet --bins
bench=target/release/pm-bench
out=bench/work/profile-$phase-$scale
mkdir -p "$out"
common=(--scale "$scale" --runs 1 --reuse-dataset --markdown none --results-dir "$out")
[ "$phase" = ingest-postgres ] || common+=(--postgres-url none)

case $phase in
  reads) extra=(--phases reads --streams 64 --duration-secs 10); trigger='warmed' ;;
  export) extra=(--phases export); trigger='server pid' ;;
  ingest) extra=(--phases ingest); trigger='server pid' ;;
  # The SQLite streams come first; the next server is the PostgreSQL stream's.
  ingest-postgres) extra=(--phases ingest); trigger='ingest sqlite batch 10000' ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
if [ "${phase%-postgres}" != ingest ]; then
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
if [ "$phase" = ingest-postgres ]; then
  before=$(grep -c 'server pid' "$log")
  until [ "$(grep -c 'server pid' "$log")" -gt "$before" ]; do
    kill -0 "$bench_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
fi
pid=$(sed -n 's/.*server pid \([0-9]*\).*/\1/p' "$log" | tail -n 1)
[ -n "$pid" ] || { echo "no server pid in $log" >&2; exit 1; }
if [ "$phase" = ingest-postgres ]; then
  # The registry loads first (a second or two), then the records stream.
  sleep 3
  perf record -F 999 -g -a -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.log"
  # The rest of the phase (other batch sizes, the anchors) is not what was profiled.
  kill "$bench_pid" 2>/dev/null || true
elif [ "$phase" = reads ]; then
  perf record -F 999 -g -p "$pid" -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.log"
else
  # Ends when the server exits at the end of the run.
  perf record -F 999 -g -p "$pid" -o "$out/perf.data" 2>"$out/perf.log"
fi
wait "$bench_pid" || [ "$phase" = ingest-postgres ]
trap - EXIT

echo "== $phase at $scale: pm-bench said"
grep -v 'server pid' "$log" | sed 's/^/  /'
if [ "$phase" = ingest-postgres ]; then
  echo "== samples by process"
  perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n 8
  echo "== PostgreSQL's samples by symbol (>= 0.5% of all)"
  perf report -i "$out/perf.data" --no-children --comms postgres --sort symbol --stdio -g none \
    --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]' | cut -c1-150 | head -n 40
  exit 0
fi
echo "== server samples by shared object"
perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | head -n 8
echo "== server samples by symbol (>= 1%)"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 1 2>/dev/null \
  | grep -E '^ +[0-9]' | cut -c1-150 | head -n 40
