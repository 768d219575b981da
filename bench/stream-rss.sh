#!/usr/bin/env bash
# Peak resident memory of the server while one IngestRecords stream carries N
# records (the synthetic data set, batches of B), on a fresh SQLite database.
#   bench/stream-rss.sh [RECORDS] [BATCH]
# Prints the server's RSS after the registry is loaded and its peak (VmHWM) over the
# whole run, with the client's throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
batch=${2:-10000}
port=${PM_BENCH_PORT:-50071}
cargo build --release --quiet --bin partnership-metrics
bin=target/release/partnership-metrics
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --database-url "sqlite://$dir/bench.db" 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 50); do
  grep -q . <(ss -ltn "sport = :$port" 2>/dev/null | tail -n +2) && break
  sleep 0.1
done
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
"$bin" demo --target "http://127.0.0.1:$port" --records "$records" --batch-size "$batch" >/dev/null
echo "records=$records batch=$batch"
echo "server VmRSS after the run: $(( $(rss VmRSS) / 1024 )) MiB"
echo "server peak VmHWM over the run: $(( $(rss VmHWM) / 1024 )) MiB"
echo "database size: $(du -sh "$dir" | cut -f1)"
