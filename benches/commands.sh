#!/bin/sh
# The whole commands as a user runs them, on the release binary: wall time
# (hyperfine) and peak resident memory (/usr/bin/time -v), for BENCHMARKS.md.
#   benches/commands.sh [DIR] [RUNS]
# DIR (default target/bench-inputs) is filled once by
#   cargo run --release --example timing -- inputs 100000 DIR
set -eu
export USER=${USER:-bench}
cd "$(dirname "$0")/.."
dir=${1:-target/bench-inputs}
runs=${2:-5}
bin=${CARGO_TARGET_DIR:-target}/release/chancery
cargo build --release --bin chancery --example timing
[ -f "$dir/referrals.csv" ] || "${CARGO_TARGET_DIR:-target}/release/examples/timing" inputs 100000 "$dir"
b="$dir/run.db" k="$dir/batch.db.key"
# Each prepare ends with sync: a copied file's dirty pages would otherwise be
# written by the command's own fsync.
fresh="rm -f $b $b-wal $b-shm && cp $dir/batch.db $b && sync"
# One referral's values as --set arguments, from one.csv.
set_args=$(python3 -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1])))[0]
print(" ".join(f"--set {k}={v}" for k,v in r.items() if k not in ("participant","site")))' "$dir/one.csv")
one_id=$(sed -n 2p "$dir/one.csv" | cut -d, -f1)
one_site=$(sed -n 2p "$dir/one.csv" | cut -d, -f2)
i="$dir/imp.db"
imp="rm -f $i $i-wal $i-shm && cp $dir/import.db $i && sync"
rss() { # peak RSS and wall of one run: rss LABEL PREPARE COMMAND
    sh -c "$2"
    /usr/bin/time -v sh -c "$3 >/dev/null" 2>&1 |
        awk -v l="$1" '/Maximum resident/ {r=$NF} /Elapsed/ {w=$NF} END {printf "%s: peak RSS %.0f MiB, wall %s\n", l, r/1024, w}'
}
uptime
batch="$bin randomise --db $b --key $k --batch $dir/referrals.csv"
hyperfine -N --runs "$runs" --prepare "sh -c '$fresh'" "$batch"
rss "randomise --batch" "$fresh" "$batch"
cp "$b" "$dir/after-batch.db"
one="$bin randomise --db $b --key $k --participant $one_id --site $one_site $set_args"
hyperfine -N --runs "$runs" --prepare "sh -c 'rm -f $b-wal $b-shm && cp $dir/after-batch.db $b && sync'" "$one"
rss "randomise (one)" "cp $dir/after-batch.db $b && sync" "$one"
import="$bin outcome import --db $i --csv $dir/outcomes.csv --now 2027-01-10T12:00:00Z --allow-future-time"
hyperfine -N --runs "$runs" --prepare "sh -c '$imp'" "$import"
rss "outcome import" "$imp" "$import"
analyse="$bin analyse --db $dir/demo/trial.db --json"
hyperfine -N --warmup 1 --runs "$runs" "$analyse"
rss "analyse --json" true "$analyse"
demo="$bin demo --dir $dir/demo-run"
hyperfine -N --runs "$runs" --prepare "rm -rf $dir/demo-run" "$demo"
rss "demo (6,000 referrals)" "rm -rf $dir/demo-run" "$demo"
verify="$bin verify --db $dir/verify.db"
hyperfine -N --warmup 1 --runs "$runs" "$verify"
rss "verify (1,000,001 entries)" true "$verify"
uptime
