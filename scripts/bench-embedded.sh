#!/usr/bin/env bash
# bench-embedded.sh - embedded mode at scale: wall time, simulated requests per second and
# peak RSS of `lab scenario run FILE --json` for generated 10-, 100- and 1000-node clusters
# and for the shipped local-imbalance scenario, then the one-thread throughput of seed-like
# topologies with $REQUESTS requests each, as one markdown table on stdout (the README's
# table). Progress goes to stderr.
#
# Scale rows: each generated cluster is N nodes, N NodePort Services x 10 replicas and 10*N
# requests:
#   lab scenario gen --nodes N --services N --replicas 10 --requests $((10*N)) [--policy P] [--seed S]
# written to a file, then run with /usr/bin/time -v (wall clock and "Maximum resident set
# size"). requests/s = the requests in the run's JSON / wall time (end to end: config
# loading, scheduling, syncs and the packet path). CPU time (user + system) is printed too:
# on a shared machine it is the steadier figure.
#
# Throughput rows (REQUESTS requests each, default 30 000): local-imbalance and seed-cluster
# (4 nodes, the blog's topologies) with their plan's count raised, and generated 3-node
# (1 Service x 3 replicas) and 10-node (10 Services x 10 replicas) clusters.
#
# Every run sets LAB_TIMINGS=1: lab prints its phases on stderr (wall/thread-CPU ms of load,
# setup, simulate, collect, output, and its thread count at the end; crates/lab/src/timings.rs).
# "simulate CPU" is the packet path alone (the plan's requests, no config parsing, world
# building or JSON), "simulated requests/s" = requests / simulate thread-CPU time, "other CPU"
# = load + setup + collect + output, and "threads" must be 1 (a run never leaves its thread).
# Each row is the run with the least simulate CPU of RUNS runs.
#
# Usage:  scripts/bench-embedded.sh            # builds target/release/lab first
# Env:
#   SIZES="10 100 1000"  node counts to generate (scale rows)
#   REQUESTS=30000       requests per throughput row (THROUGHPUT=0 skips those rows)
#   RUNS=3               runs per row (the best is shown)
#   POLICY=Cluster       --policy for `scenario gen` (Cluster | Local | mixed)
#   SEED=1               --seed for `scenario gen`
#   LAB_BIN=path         use this binary instead of building target/release/lab
#   OUT_DIR=path         generated configs and raw outputs (default /tmp/bench-embedded)
# Needs: cargo (unless LAB_BIN), /usr/bin/time (GNU time), python3. Not run by .ci/run.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-10 100 1000}
REQUESTS=${REQUESTS:-30000}
THROUGHPUT=${THROUGHPUT:-1}
RUNS=${RUNS:-3}
POLICY=${POLICY:-Cluster}
SEED=${SEED:-1}
OUT_DIR=${OUT_DIR:-/tmp/bench-embedded}
LAB_BIN=${LAB_BIN:-}

say() { printf '[bench-embedded] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is missing (apt-get install -y time)"
command -v python3 >/dev/null || die "python3 is missing"
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "REQUESTS=$REQUESTS is not a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS is not a positive number"

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

# Reads the /usr/bin/time -v + lab-timings stderr of each run of one row and prints the
# row for the run with the least simulate CPU.
ROW_PY='
import json, re, sys
label, nodes, jpath, expect, *tpaths = sys.argv[1:]
doc = json.load(open(jpath))
reqs = doc.get("requests", [])
if expect and len(reqs) != int(expect):
    sys.exit(f"{label}: {len(reqs)} requests in the JSON, expected {expect}")
ok = sum(1 for r in reqs if r.get("outcome") == "ok")

def run(tpath):
    tv = open(tpath).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", tv)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", tv).group(1)) for k in ("User", "System"))
    line = re.search(r"^lab-timings .*$", tv, re.M)
    if not line:
        sys.exit(f"{label}: no lab-timings line on stderr ({tpath}): this lab has no LAB_TIMINGS")
    found = re.findall(r"(\w+)=([\d.]+)/([\d.]+)", line.group(0))
    phases = {k: float(c) / 1000 for k, w, c in found}
    # time -v counts in 10 ms steps: a shorter run takes lab'"'"'s own (load to output) wall.
    wall = max(wall, max(float(w) / 1000 for k, w, c in found if k == "total"))
    threads = int(re.search(r"threads=(\d+)", line.group(0)).group(1))
    return wall, cpu, rss, phases, threads

wall, cpu, rss, ph, threads = min((run(t) for t in tpaths), key=lambda r: r[3]["simulate"])
nodes = len(doc.get("nodes", [])) or nodes
pods = len(doc.get("pods", []))
svcs = len(doc.get("services", []))
rate = len(reqs) / wall if wall > 0 else float("inf")
sim = ph["simulate"]
sim_rate = len(reqs) / sim if sim > 0 else float("inf")
other = sum(ph[k] for k in ("load", "setup", "collect", "output"))
print(f"| {label} | {nodes} | {svcs} | {pods} | {len(reqs)} ({ok} ok) | {wall:.3f} s | {cpu:.2f} s | {rate:,.0f} | {sim:.3f} s | {sim_rate:,.0f} | {other:.3f} s | {threads} | {rss / 1024:.1f} MiB |")
'

# measure LABEL NODES CONFIG [EXPECTED_REQUESTS]: run `lab scenario run CONFIG --json` RUNS
# times under /usr/bin/time -v with LAB_TIMINGS=1 and print one table row.
measure() {
  local label=$1 nodes=$2 config=$3 expect=${4:-} i tv
  local json=$OUT_DIR/$label.json
  rm -f "$OUT_DIR/$label".*.time
  for ((i = 1; i <= RUNS; i++)); do
    tv=$OUT_DIR/$label.$i.time
    say "$label: lab scenario run $config --json (run $i/$RUNS)"
    if ! (cd "$REPO" && LAB_TIMINGS=1 /usr/bin/time -v "$LAB_BIN" scenario run "$config" --json >"$json" 2>"$tv"); then
      tail -n 30 "$tv" >&2
      die "$label: lab scenario run failed (stderr and time -v in $tv)"
    fi
  done
  python3 -c "$ROW_PY" "$label" "$nodes" "$json" "$expect" "$OUT_DIR/$label".*.time
}

# The shipped scenarios with the plan's count raised to REQUESTS; lab-configs/manifests is
# copied next to them so relative manifest files still resolve.
WRITE_PY='
import re, sys
src, out, n = sys.argv[1:]
li = open(f"{src}/local-imbalance.yaml").read()
li, k = re.subn(r"(?m)^(    count: )3000$", rf"\g<1>{n}", li)
assert k == 1, "local-imbalance.yaml: no plan line \"count: 3000\""
open(f"{out}/local-imbalance-{n}.yaml", "w").write(li)
sc = open(f"{src}/seed-cluster.yaml").read()
sc, k = re.subn(r"(?m)^(    service: default/nginx)$", rf"\1\n    count: {n}", sc)
assert k == 1, "seed-cluster.yaml: no plan line \"service: default/nginx\""
open(f"{out}/seed-cluster-{n}.yaml", "w").write(sc)
'

rows=()
for n in $SIZES; do
  cfg=$OUT_DIR/gen-$n.yaml
  q=$((10 * n))
  say "generating $n nodes, $n services x 10 replicas, $q requests ($POLICY, seed $SEED)"
  "$LAB_BIN" scenario gen --nodes "$n" --services "$n" --replicas 10 --requests "$q" \
    --policy "$POLICY" --seed "$SEED" >"$cfg" || die "lab scenario gen --nodes $n failed"
  rows+=("$(measure "gen-$n" "$n" "$cfg")") || exit 1
done
rows+=("$(measure local-imbalance 4 local-imbalance)") || exit 1

if [[ $THROUGHPUT != 0 ]]; then
  cp -r "$REPO/lab-configs/manifests" "$OUT_DIR/" || die "copying lab-configs/manifests"
  python3 -c "$WRITE_PY" "$REPO/lab-configs" "$OUT_DIR" "$REQUESTS" || die "writing the throughput configs"
  rows+=("$(measure "local-imbalance-$REQUESTS" 4 "$OUT_DIR/local-imbalance-$REQUESTS.yaml" "$REQUESTS")") || exit 1
  rows+=("$(measure "seed-cluster-$REQUESTS" 4 "$OUT_DIR/seed-cluster-$REQUESTS.yaml" "$REQUESTS")") || exit 1
  for shape in "3 1 3" "10 10 10"; do
    read -r n s r <<<"$shape"
    label="gen-$n-$s-$r-$REQUESTS"
    say "generating $n nodes, $s services x $r replicas, $REQUESTS requests ($POLICY, seed $SEED)"
    "$LAB_BIN" scenario gen --nodes "$n" --services "$s" --replicas "$r" --requests "$REQUESTS" \
      --policy "$POLICY" --seed "$SEED" >"$OUT_DIR/$label.yaml" || die "lab scenario gen ($label) failed"
    rows+=("$(measure "$label" "$n" "$OUT_DIR/$label.yaml" "$REQUESTS")") || exit 1
  done
fi

echo "| config | nodes | services | pods | requests | wall time | CPU time | requests/s | simulate CPU | simulated requests/s | other CPU | threads | max RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
say "done (raw outputs in $OUT_DIR)"
