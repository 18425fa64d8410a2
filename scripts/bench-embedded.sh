#!/usr/bin/env bash
# bench-embedded.sh - embedded mode at scale: wall time, simulated requests per second and
# peak RSS of `lab scenario run FILE --json` for generated 10-, 100- and 1000-node clusters
# and for the shipped local-imbalance scenario, as one markdown table on stdout (the
# README's table). Progress goes to stderr.
#
# Each generated cluster is N nodes, N NodePort Services x 10 replicas and 10*N requests:
#   lab scenario gen --nodes N --services N --replicas 10 --requests $((10*N)) [--policy P] [--seed S]
# written to a file, then run once with /usr/bin/time -v (wall clock and "Maximum resident
# set size"). requests/s = the requests in the run's JSON / wall time (end to end: config
# loading, scheduling, syncs and the packet path). CPU time (user + system) is printed too:
# on a shared machine it is the steadier figure.
#
# Usage:  scripts/bench-embedded.sh            # builds target/release/lab first
# Env:
#   SIZES="10 100 1000"  node counts to generate
#   POLICY=Cluster       --policy for `scenario gen` (Cluster | Local | mixed)
#   SEED=1               --seed for `scenario gen`
#   LAB_BIN=path         use this binary instead of building target/release/lab
#   OUT_DIR=path         generated configs and raw outputs (default /tmp/bench-embedded)
# Needs: cargo (unless LAB_BIN), /usr/bin/time (GNU time), python3. Not run by .ci/run.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-10 100 1000}
POLICY=${POLICY:-Cluster}
SEED=${SEED:-1}
OUT_DIR=${OUT_DIR:-/tmp/bench-embedded}
LAB_BIN=${LAB_BIN:-}

say() { printf '[bench-embedded] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is missing (apt-get install -y time)"
command -v python3 >/dev/null || die "python3 is missing"

if [[ -z $LAB_BIN ]]; then
  say "building the release binary (cargo build --release -p lab)"
  (cd "$REPO" && cargo build --release -p lab >&2) || die "cargo build --release -p lab failed"
  LAB_BIN=$REPO/target/release/lab
fi
[[ -x $LAB_BIN ]] || die "no lab binary at $LAB_BIN"

# `lab scenario gen` writes the generated configs; without it there is nothing to measure.
if ! "$LAB_BIN" scenario gen --help >/dev/null 2>&1; then
  die "'$LAB_BIN scenario gen' is missing: this binary cannot generate scale configs (it needs \`lab scenario gen --nodes N --services S --replicas R --requests Q\`)"
fi

mkdir -p "$OUT_DIR"

# measure LABEL NODES CONFIG: run `lab scenario run CONFIG --json` under /usr/bin/time -v and
# print one table row.
measure() {
  local label=$1 nodes=$2 config=$3
  local json=$OUT_DIR/$label.json tv=$OUT_DIR/$label.time
  say "$label: lab scenario run $config --json"
  if ! (cd "$REPO" && /usr/bin/time -v "$LAB_BIN" scenario run "$config" --json >"$json" 2>"$tv"); then
    tail -n 30 "$tv" >&2
    die "$label: lab scenario run failed (stderr and time -v in $tv)"
  fi
  python3 - "$label" "$nodes" "$json" "$tv" <<'EOF'
import json, re, sys
label, nodes, jpath, tpath = sys.argv[1:]
doc = json.load(open(jpath))
reqs = doc.get("requests", [])
ok = sum(1 for r in reqs if r.get("outcome") == "ok")
tv = open(tpath).read()
m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", tv)
wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", tv).group(1)) for k in ("User", "System"))
nodes = len(doc.get("nodes", [])) or nodes
pods = len(doc.get("pods", []))
svcs = len(doc.get("services", []))
rate = len(reqs) / wall if wall > 0 else float("inf")
print(f"| {label} | {nodes} | {svcs} | {pods} | {len(reqs)} ({ok} ok) | {wall:.3f} s | {cpu:.2f} s | {rate:,.0f} | {rss / 1024:.1f} MiB |")
EOF
}

rows=()
for n in $SIZES; do
  cfg=$OUT_DIR/gen-$n.yaml
  q=$((10 * n))
  say "generating $n nodes, $n services x 10 replicas, $q requests ($POLICY, seed $SEED)"
  "$LAB_BIN" scenario gen --nodes "$n" --services "$n" --replicas 10 --requests "$q" \
    --policy "$POLICY" --seed "$SEED" >"$cfg" || die "lab scenario gen --nodes $n failed"
  rows+=("$(measure "gen-$n" "$n" "$cfg")") || exit 1
done
rows+=("$(measure local-imbalance 3 local-imbalance)") || exit 1

echo "| config | nodes | services | pods | requests | wall time | CPU time | requests/s | max RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
say "done (raw outputs in $OUT_DIR)"
