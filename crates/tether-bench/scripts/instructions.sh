#!/usr/bin/env bash
# Instructions per request of each stack, counted by callgrind (deterministic, unlike time on a
# shared 2-core machine). Runs `tether-bench overhead` with two request counts and divides the
# difference, so start-up and the first session's creation cancel out.
#
#   crates/tether-bench/scripts/instructions.sh [read write mixed]
#   STACKS="tether-redis tower-sessions-redis" crates/tether-bench/scripts/instructions.sh read
#
# Redis stacks count the instructions of the app process only (the redis-server the bench
# starts is another process).
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -q -p tether-bench
bin=target/release/tether-bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
workloads=("${@:-read write mixed}")
read -r -a stacks <<< "${STACKS:-none tether-memory tower-sessions-memory}"
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        "$bin" overhead --stacks "$1" --workload "$2" --requests "$3" >/dev/null 2>&1
    grep '^summary' "$out/cg" | cut -d' ' -f2
}
printf '%-8s %-22s %12s\n' workload stack instr/request
for workload in ${workloads[@]}; do
    for stack in "${stacks[@]}"; do
        small=$(count "$stack" "$workload" 5000)
        large=$(count "$stack" "$workload" 15000)
        printf '%-8s %-22s %12d\n' "$workload" "$stack" $(( (large - small) / 10000 ))
    done
done
