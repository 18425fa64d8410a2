#!/usr/bin/env bash
# bench-real.sh - the lab's real mode next to the kernel reference, in one run, one table.
#
# Measures, from the client 203.0.113.10 on the kernel reference (../shared/reference/,
# netns + iptables) and then on the lab (`lab up lab-configs/kernel-ref.yaml`, TUN + the
# simulated nodes), the same paths:
#   np-cluster-master : NodePort via master 10.151.30.11, policy Cluster (DNAT + SNAT,
#                       cross-node to a worker pod)
#   np-local-worker1  : NodePort via worker1 10.151.30.12, policy Local (DNAT only)
# and the same figures:
#   iperf3    client -> pod throughput (NodePort 32201 -> iperf3 -s in pod web-w1)
#   curl-1GiB pod -> client, GET /1g.bin (sparse file) through NodePort 32761
#   wrk-ka    wrk -t1 -c32 keep-alive request rate, GET /
#   wrk-close same with "Connection: close" (a new connection per request), each run on a
#             freshly started lab (the kernel side rebuilds its topology before each run too)
# then prints kernel, lab and lab/kernel for each figure: first at LAB_MTU (1500, what pods
# really have, the same as the kernel reference's veths), then at each of EXTRA_MTUS.
#
# The two never run at once (2 cores): the kernel side is the reference's own bench.sh
# (SECTIONS/RUNS/IPERF_T/WRK_D passed through; it also measures its direct-pod baselines),
# then the lab comes up once per policy. Everything is torn down at the end (trap).
# Bounded: about 15 minutes with the defaults (RUNS=1: about 6); every client command has a timeout.
#
# Usage (root):  scripts/bench-real.sh            # build (release) if needed, then measure
# Env:
#   LAB_MTU=1500      MTU of the lab's TUN links (pods and clients see it; 1500 = like a veth)
#   EXTRA_MTUS="9000 65000"  further lab MTUs measured after LAB_MTU (rows of their own; "" = none)
#   THREADS="1 2"     datapath threads (`lab up --datapath-threads`) measured at LAB_MTU; the
#                     first is also used for EXTRA_MTUS (rows "lab@MTU" for 1, "lab@MTUxN")
#   RUNS=3            runs per figure (median printed); IPERF_T=3 (s); WRK_D=3s; CURL_RUNS=$RUNS
#   SIDES=kernel,lab  which sides to run
#   LAB_BIN=path      the lab binary (default: target-bench/release/lab, built if missing)
#   KREF_DIR=path     the kernel reference (default: ../shared/reference from the repo)
#   OUT_DIR=path      raw outputs (default /tmp/bench-real)
# Needs: iperf3 wrk curl nginx python3 (+ iptables conntrack for the kernel side).
# Installs nothing. Not run by .ci/run.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
KREF_DIR=${KREF_DIR:-$REPO/../shared/reference}
LAB_MTU=${LAB_MTU:-1500}
EXTRA_MTUS=${EXTRA_MTUS-9000 65000}
THREADS=${THREADS:-1 2}
MTU=$LAB_MTU   # the MTU of the lab run in progress
NT=1           # datapath threads of the lab run in progress
TAG=$MTU       # how its rows are labelled: lab@1500, lab@1500x2
RUNS=${RUNS:-3}
CURL_RUNS=${CURL_RUNS:-$RUNS}
IPERF_T=${IPERF_T:-3}
WRK_D=${WRK_D:-3s}
SIDES=${SIDES:-kernel,lab}
OUT_DIR=${OUT_DIR:-/tmp/bench-real}
LAB_BIN=${LAB_BIN:-}
CL_NS=nplab-cl-client

say() { printf '[bench-real] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, TUN)"
missing=()
for p in iperf3 wrk curl nginx python3 timeout; do command -v "$p" >/dev/null || missing+=("$p"); done
if [[ $SIDES == *kernel* ]]; then
  for p in iptables-nft-restore conntrack; do command -v "$p" >/dev/null || missing+=("$p"); done
  [[ -x $KREF_DIR/kernel-ref.sh && -x $KREF_DIR/bench.sh ]] || die "no kernel reference in $KREF_DIR (set KREF_DIR)"
fi
((${#missing[@]} == 0)) || die "missing: ${missing[*]} (apt-get install -y iperf3 wrk curl nginx-light iptables conntrack python3)"

mkdir -p "$OUT_DIR"
RES=$OUT_DIR/results.txt   # "side path figure value"
: >"$RES"
LAB_PID=

cleanup() {
  if [[ -n $LAB_PID ]] && kill -0 "$LAB_PID" 2>/dev/null; then
    kill -TERM "$LAB_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$LAB_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  LAB_PID=
  [[ -n $LAB_BIN && -x $LAB_BIN ]] && "$LAB_BIN" down >/dev/null 2>&1
  [[ -x $KREF_DIR/kernel-ref.sh ]] && "$KREF_DIR/kernel-ref.sh" down >/dev/null 2>&1
  local left
  left=$(ip netns list | awk '{print $1}' | grep -E '^(nplab-|kref-)' | tr '\n' ' ')
  [[ -z $left ]] || say "WARNING: namespaces left behind: $left"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

med() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print("%.2f" % statistics.median(v) if v else "n/a")' "$@"; }
rec() { echo "$1 $2 $3 $4" >>"$RES"; say "$1 $2 $3: $4"; }

# ------------------------------------------------------------------ kernel reference
kernel_side() {
  say "kernel reference: bench.sh SECTIONS=tput,wrk RUNS=$RUNS IPERF_T=$IPERF_T WRK_D=$WRK_D"
  local raw=$OUT_DIR/kernel-raw.txt
  RUNS=$RUNS RUNS_CURL=$CURL_RUNS IPERF_T=$IPERF_T WRK_D=$WRK_D OUT=$raw SECTIONS=tput,wrk \
    timeout 400 "$KREF_DIR/bench.sh" >"$OUT_DIR/kernel-bench.log" 2>&1 ||
    say "bench.sh exited $? (see $OUT_DIR/kernel-bench.log)"
  "$KREF_DIR/kernel-ref.sh" down >/dev/null 2>&1
  local path
  for path in np-cluster-master np-local-worker1; do
    rec kernel "$path" iperf3 "$(awk -v p="$path:" '$1=="MEDIAN" && $2=="iperf3" && $3==p {print $4}' "$raw")"
    rec kernel "$path" curl-1GiB "$(awk -v p="$path:" '$1=="MEDIAN" && $2=="curl-1GiB" && $3==p {print $4}' "$raw")"
    rec kernel "$path" wrk-ka "$(awk -v p="$path:" '$1=="MEDIAN" && $3=="keepalive" && $4==p {print $5}' "$raw")"
    rec kernel "$path" wrk-close "$(awk -v p="$path:" '$1=="MEDIAN" && $3=="close" && $4==p {print $5}' "$raw")"
  done
}

# ------------------------------------------------------------------ lab
lab_bin() {
  if [[ -z $LAB_BIN ]]; then
    LAB_BIN=$REPO/target-bench/release/lab
    if [[ ! -x $LAB_BIN ]]; then
      say "building the lab (release) into target-bench/"
      (cd "$REPO" && CARGO_TARGET_DIR=$REPO/target-bench cargo build --release -q -p lab) ||
        die "build failed"
    fi
  fi
  [[ -x $LAB_BIN ]] || die "no lab binary at $LAB_BIN"
}

lab_start() { # scenario
  local log=$OUT_DIR/lab-up-$1.log
  wait_idle
  (cd "$REPO" && exec "$LAB_BIN" up "lab-configs/$1.yaml" --mtu "$MTU" --datapath-threads "$NT" \
      --exec 'web-w1=iperf3 -s -p 5201' --file 1g.bin=1G) >"$log" 2>&1 &
  LAB_PID=$!
  local i
  for i in $(seq 1 300); do
    if grep -q '^ready:' "$log"; then
      say "lab up ($1, mtu $MTU, $NT datapath threads, pid $LAB_PID)"
      # Warm the page cache like bench.sh does: the first read of a sparse file fills 1 GiB
      # of cache pages, which otherwise halves the first download from each pod.
      cat /run/nplab/*/html/1g.bin >/dev/null 2>&1
      return 0
    fi
    kill -0 "$LAB_PID" 2>/dev/null || { cat "$log" >&2; die "lab up exited"; }
    sleep 0.1
  done
  die "lab up not ready after 30 s (see $log)"
}

lab_stop() {
  [[ -n $LAB_PID ]] || return 0
  kill -TERM "$LAB_PID" 2>/dev/null
  local i
  for i in $(seq 1 100); do kill -0 "$LAB_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$LAB_PID" 2>/dev/null && { say "lab up did not stop on SIGTERM; killing it"; kill -KILL "$LAB_PID"; }
  wait "$LAB_PID" 2>/dev/null
  LAB_PID=
  "$LAB_BIN" down >/dev/null 2>&1
}

cx() { ip netns exec "$CL_NS" "$@"; }

lab_iperf() { # path host
  local i v vals=()
  for ((i = 1; i <= RUNS; i++)); do
    v=$(timeout $((IPERF_T + 15)) ip netns exec "$CL_NS" iperf3 -c "$2" -p 32201 -t "$IPERF_T" -O 1 -J --connect-timeout 3000 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null) || v=0
    echo "lab@$TAG iperf3 $1 run$i: $v Gbit/s" >>"$OUT_DIR/lab-raw.txt"
    vals+=("$v"); sleep 0.5
  done
  rec "lab@$TAG" "$1" iperf3 "$(med "${vals[@]}")"
}

lab_curl() { # path host
  local i v vals=()
  for ((i = 1; i <= CURL_RUNS; i++)); do
    v=$(cx curl -s --connect-timeout 3 -m 60 -o /dev/null -w '%{speed_download} %{size_download}' "http://$2:32761/1g.bin")
    echo "lab@$TAG curl-1GiB $1 run$i: $v (B/s bytes)" >>"$OUT_DIR/lab-raw.txt"
    v=$(python3 -c "import sys; s,n='${v:-0 0}'.split(); print('%.2f' % (float(s)*8/1e9) if int(float(n)) == 1<<30 else 0)")
    vals+=("$v")
  done
  rec "lab@$TAG" "$1" curl-1GiB "$(med "${vals[@]}")"
}

lab_wrk() { # path host mode scenario
  local i out rps vals=() hdr=()
  [[ $3 == close ]] && hdr=(-H "Connection: close")
  for ((i = 1; i <= RUNS; i++)); do
    # Like bench.sh's fresh_* preps on the kernel side: every Connection: close run starts on
    # a lab just brought up (no TIME_WAIT sockets in the pods, empty conntrack tables);
    # back-to-back runs through the SNAT path collapse on both (PAWS rejects, SYN retries).
    if [[ $3 == close ]]; then
      lab_stop
      lab_start "$4"
    fi
    out=$(timeout 60 ip netns exec "$CL_NS" wrk -t1 -c32 -d"$WRK_D" "${hdr[@]}" "http://$2:32761/" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    echo "lab@$TAG wrk-$3 $1 run$i: ${rps:-0} req/s $(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr '\n' ' ')" >>"$OUT_DIR/lab-raw.txt"
    vals+=("${rps:-0}"); sleep 0.5
  done
  local fig=wrk-ka; [[ $3 == close ]] && fig=wrk-close
  rec "lab@$TAG" "$1" "$fig" "$(med "${vals[@]}")"
}

lab_path() { # scenario path host
  lab_start "$1"
  cx curl -s --connect-timeout 3 -m 5 -o /dev/null "http://$3:32761/" || say "WARNING: first request via $3 failed"
  lab_iperf "$2" "$3"
  lab_curl "$2" "$3"
  lab_wrk "$2" "$3" keepalive "$1"
  lab_wrk "$2" "$3" close "$1"
  lab_stop
}

lab_side() {
  lab_bin
  lab_path kernel-ref np-cluster-master 10.151.30.11
  lab_path kernel-ref-local np-local-worker1 10.151.30.12
}

# Real-mode tests and other labs share the namespace names (nplab-*, kref-*) and the lab's
# lock: wait until none is around (a running `lab up`/test would otherwise be disturbed).
wait_idle() {
  local i busy
  for i in $(seq 1 ${IDLE_WAIT:-180}); do
    busy=$(ip netns list | awk '{print $1}' | grep -cE '^(nplab-|kref-)')
    [[ $busy -eq 0 ]] && return 0
    ((i == 1)) && say "waiting for other labs / kernel references to finish (nplab-/kref- namespaces exist)"
    sleep 1
  done
  die "machine busy with another lab for ${IDLE_WAIT:-180} s; not benchmarking"
}

# ------------------------------------------------------------------ run + table
say "start $(date -u +%FT%TZ) kernel $(uname -r) nproc $(nproc) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
[[ $SIDES == *lab* ]] && lab_bin   # build before anything is measured
wait_idle
loadavg() { # side: the 1/5/15-minute load just before a side starts (other work on the machine)
  local l
  l=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
  echo "loadavg $1 - $l" >>"$RES"
  say "loadavg before $1: $l"
}
: >"$OUT_DIR/lab-raw.txt"
[[ $SIDES == *kernel* ]] && { loadavg kernel; kernel_side; }
TAGS=()
if [[ $SIDES == *lab* ]]; then
  first_nt=${THREADS%% *}
  runs=()
  for NT in $THREADS; do runs+=("$LAB_MTU:$NT"); done
  for MTU in $EXTRA_MTUS; do runs+=("$MTU:$first_nt"); done
  for r in "${runs[@]}"; do
    MTU=${r%%:*} NT=${r##*:}
    TAG=$MTU; ((NT > 1)) && TAG=${MTU}x$NT
    TAGS+=("$TAG")
    wait_idle
    loadavg "lab@$TAG"
    lab_side
  done
fi
cleanup

python3 - "$RES" "${TAGS[@]}" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
val = {(s, p, f): v for s, p, f, *r in rows for v in [r[0] if r else "n/a"]}
units = {"iperf3": "Gbit/s", "curl-1GiB": "Gbit/s", "wrk-ka": "req/s", "wrk-close": "req/s"}
load = {p: r[0] for s, p, f, *r in rows if s == "loadavg" and r}
for mtu in sys.argv[2:]:
    lab = f"lab@{mtu}"
    if not any(k[0] == lab for k in val):
        continue
    m, _, nt = mtu.partition("x")
    what = f"MTU {m}, {nt or 1} datapath thread{'s' if nt else ''}"
    print(f"\nloadavg (1/5/15 min) before kernel: {load.get('kernel', 'n/a')}, before lab at {what}: {load.get(lab, 'n/a')}")
    print(f"| path | figure | kernel (veth MTU 1500) | lab ({what}) | lab/kernel |")
    print("|---|---|---|---|---|")
    for p in ["np-cluster-master", "np-local-worker1"]:
        for f, u in units.items():
            k, l = val.get(("kernel", p, f), "n/a"), val.get((lab, p, f), "n/a")
            try:
                r = "%.2f×" % (float(l) / float(k))
            except (ValueError, ZeroDivisionError):
                r = "n/a"
            print(f"| {p} | {f} ({u}) | {k} | {l} | {r} |")
EOF
say "done $(date -u +%FT%TZ); raw figures in $OUT_DIR"
