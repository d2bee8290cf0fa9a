#!/usr/bin/env bash
# The performance comparison: the bevraging path measured side by side, on this machine, for
#   direct            client → endpoint (Endpoint.Answer, mTLS)
#   knooppunt         client → Knooppunt → endpoint (Exchange.Request; mTLS on both legs,
#                     agreements and the audit log on, fields: all)
#   knooppunt-filter  the same with field filtering on (allow-lists on request and reply)
#   nginx             client → nginx grpc_pass → endpoint (Endpoint.Answer; mTLS both legs)
#   haproxy           client → HAProxy (h2 both legs) → endpoint (Endpoint.Answer; mTLS both legs)
# with 1 KiB and 16 KiB payloads (query and reply), 1 and 64 calls in flight, the setups
# alternated run by run. Prints a table and writes JSON (see docs/performance.md).
#
#   tools/perf/compare.sh [--seconds=5] [--rounds=3] [--sizes="1024 16384"]
#       [--concurrency="1 64"] [--setups="direct knooppunt knooppunt-filter nginx haproxy"]
#       [--idle=10000] [--build=DIR] [--json=FILE] [--no-install] [--keep] [--perf=DIR]
#
# Everything listens on 127.0.0.1 on free ports and is
# stopped on exit. The build goes to build-perf/ (Release) unless --build says otherwise; the
# PKI, configs, audit database and logs go to a temporary directory (kept with --keep).
# --perf=DIR: in round 1, `perf record` (cpu-clock, DWARF call graphs) of the gateway over the
# measured window of every Knooppunt run, to DIR/<setup>-<bytes>-<concurrency>.data.
# Exit status: 0 when every run succeeded (every call of every run returned OK).
set -euo pipefail

prog=compare
die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/../.." && pwd)

seconds=5
rounds=3
sizes="1024 16384"
concurrency="1 64"
setups="direct knooppunt knooppunt-filter nginx haproxy"
idle=10000
build="$repo/build-perf"
json=""
install=1
keep=0
perf_dir=""
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds=${arg#*=} ;;
    --rounds=*) rounds=${arg#*=} ;;
    --sizes=*) sizes=${arg#*=} ;;
    --concurrency=*) concurrency=${arg#*=} ;;
    --setups=*) setups=${arg#*=} ;;
    --idle=*) idle=${arg#*=} ;;
    --build=*) build=${arg#*=} ;;
    --json=*) json=${arg#*=} ;;
    --no-install) install=0 ;;
    --keep) keep=1 ;;
    --perf=*) perf_dir=${arg#*=} ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done
for s in $setups; do
  case "$s" in direct|knooppunt|knooppunt-filter|nginx|haproxy) ;; *) die "unknown setup $s" ;; esac
done
wants() { [[ " $setups " == *" $1 "* ]]; }

# 1. What it needs: Debian packages (nginx, haproxy among them), then a Release build.
if [ "$install" -eq 1 ]; then "$repo/tools/install-deps.sh" >&2; fi
if wants nginx; then command -v nginx >/dev/null || die "nginx not installed (tools/install-deps.sh)"; fi
if wants haproxy; then command -v haproxy >/dev/null || die "haproxy not installed (tools/install-deps.sh)"; fi
say "building in $build (Release)"
mkdir -p "$build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKNOOPPUNT_BUILD_TESTS=OFF \
  -DKNOOPPUNT_BUILD_BENCHMARKS=ON >"$build/perf-cmake.log" 2>&1 ||
  { cat "$build/perf-cmake.log" >&2; die "cmake failed"; }
cmake --build "$build" -j"$(nproc)" --target knooppunt-gateway knooppunt-audit \
  knooppunt-perf-endpoint knooppunt-perf-loadgen >&2
gateway_bin="$build/gateway/knooppunt-gateway"
audit_bin="$build/tools/audit/knooppunt-audit"
endpoint_bin="$build/tools/perf/knooppunt-perf-endpoint"
loadgen_bin="$build/tools/perf/knooppunt-perf-loadgen"

# Connections: 10,000 idle ones need as many descriptors in the gateway and the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
say "open-file limit $(ulimit -n)"

run_dir=$(mktemp -d /tmp/knooppunt-perf.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$keep" -eq 1 ]; then say "kept $run_dir"; else rm -rf "$run_dir"; fi
}
trap cleanup EXIT

# 2. A PKI of its own.
"$repo/tools/dev-pki.sh" --out "$run_dir/pki" >/dev/null
pki="$run_dir/pki"
gateway_oin=00000099000000000001
brp_oin=00000099200000000001
groningen_oin=00000099300000000014

wait_for_file() {  # file pid name
  for _ in $(seq 1 200); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { cat "$run_dir/$3.log" >&2; die "$3 exited early"; }
    sleep 0.05
  done
  die "$3 did not start within 10 s"
}
free_port() {  # asks the kernel for a free port on 127.0.0.1
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for_port() {  # port pid name
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$run_dir/$3.log" >&2; die "$3 exited early"; }
    sleep 0.05
  done
  die "$3 did not listen on $1 within 10 s"
}

# 3. The endpoint: one process; its reply is as large as the query (the largest of --sizes
#    not above the query's size), so one endpoint serves every size.
"$endpoint_bin" --cert="$pki/brp.crt" --key="$pki/brp.key" --ca="$pki/ca.crt" \
  --gateway_oin="$gateway_oin" --reply_sizes="${sizes// /,}" \
  --port_file="$run_dir/endpoint.port" 2>"$run_dir/endpoint.log" &
endpoint_pid=$!
pids+=("$endpoint_pid")
wait_for_file "$run_dir/endpoint.port" "$endpoint_pid" endpoint
endpoint_port=$(cat "$run_dir/endpoint.port")
say "endpoint 127.0.0.1:$endpoint_port (pid $endpoint_pid)"

# 4. Knooppunt: a registry with the asking municipality and the BRP service, and two
#    agreements for the same exchange that differ only in purpose and field policy.
declare -A proxy_pids target server_oin
if wants knooppunt || wants knooppunt-filter; then
  cat >"$run_dir/registry.yaml" <<EOF
organisations:
  - oin: "$brp_oin"
    name: BRP Bevragen (perf endpoint)
    kind: register
    endpoint:
      address: 127.0.0.1:$endpoint_port
  - oin: "$groningen_oin"
    name: Gemeente Groningen
    kind: municipality
    gemeentecode: "0014"
EOF
  mkdir -p "$run_dir/agreements"
  cat >"$run_dir/agreements/perf.yaml" <<EOF
agreements:
  - id: perf-fields-all
    description: Benchmark, field filtering off (payloads forwarded as received).
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: ["$groningen_oin"]
    to: ["$brp_oin"]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
    valid_until: 2099-01-01
    fields: {all: true}
    reply_fields: {all: true}
  - id: perf-fields-filtered
    description: Benchmark, field filtering on (allow-lists naming what the payloads carry).
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: ["$groningen_oin"]
    to: ["$brp_oin"]
    purposes: [BRP-bijhouding]
    valid_from: 2020-01-01
    valid_until: 2099-01-01
    fields:
      allow: [bsn, velden]
    reply_fields:
      allow: [bsn, naam, geboorte, verblijfplaats, verblijfplaats_historie, gemeente_van_inschrijving]
EOF
  "$audit_bin" init-keys --dir="$run_dir" >/dev/null
  cat >"$run_dir/gateway.yaml" <<EOF
instance_id: knooppunt-perf
listen: 127.0.0.1:0
tls:
  cert_file: $pki/gateway.crt
  key_file: $pki/gateway.key
  client_ca_file: $pki/ca.crt
upstream_tls:
  cert_file: $pki/gateway.crt
  key_file: $pki/gateway.key
  ca_file: $pki/ca.crt
registry_file: $run_dir/registry.yaml
agreement_dirs: [$run_dir/agreements]
limits:
  max_payload_bytes: 1048576
audit:
  db_path: $run_dir/audit.db
  hmac_key_file: $run_dir/audit-hmac.key
  signing_key_file: $run_dir/audit-signing.key
melding:
  store_path: $run_dir/meldingen.db
EOF
  "$gateway_bin" --config="$run_dir/gateway.yaml" --port_file="$run_dir/gateway.port" \
    2>"$run_dir/gateway.log" &
  gateway_pid=$!
  pids+=("$gateway_pid")
  wait_for_file "$run_dir/gateway.port" "$gateway_pid" gateway
  for s in knooppunt knooppunt-filter; do
    target[$s]="127.0.0.1:$(cat "$run_dir/gateway.port")"
    proxy_pids[$s]=$gateway_pid
    server_oin[$s]=$gateway_oin
  done
  say "knooppunt ${target[knooppunt]} (pid $gateway_pid)"
fi

# 5. nginx: grpc_pass over mTLS both legs, one worker per core, pooled upstream connections.
if wants nginx; then
  port=$(free_port)
  mkdir -p "$run_dir/nginx-tmp"
  cat >"$run_dir/nginx.conf" <<EOF
daemon off;
user root;
worker_processes $(nproc);
worker_rlimit_nofile $(ulimit -n);
pid $run_dir/nginx.pid;
error_log $run_dir/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $run_dir/nginx-tmp/body;
  proxy_temp_path $run_dir/nginx-tmp/proxy;
  fastcgi_temp_path $run_dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $run_dir/nginx-tmp/uwsgi;
  scgi_temp_path $run_dir/nginx-tmp/scgi;
  upstream endpoint {
    server 127.0.0.1:$endpoint_port;
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$port ssl http2;
    ssl_certificate $pki/gateway.crt;
    ssl_certificate_key $pki/gateway.key;
    ssl_client_certificate $pki/ca.crt;
    ssl_verify_client on;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_max_body_size 2m;
    location / {
      grpc_pass grpcs://endpoint;
      grpc_ssl_certificate $pki/gateway.crt;
      grpc_ssl_certificate_key $pki/gateway.key;
      grpc_ssl_trusted_certificate $pki/ca.crt;
      grpc_ssl_verify on;
      grpc_ssl_name localhost;
      grpc_ssl_session_reuse on;
    }
  }
}
EOF
  nginx -c "$run_dir/nginx.conf" -p "$run_dir" -e "$run_dir/nginx-error.log" 2>"$run_dir/nginx.log" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  wait_for_port "$port" "$nginx_pid" nginx
  for _ in $(seq 1 100); do  # its workers (one per core) do the work: count their CPU too
    [ "$(pgrep -c -P "$nginx_pid" || true)" -ge "$(nproc)" ] && break
    sleep 0.05
  done
  target[nginx]="127.0.0.1:$port"
  proxy_pids[nginx]=$(echo "$nginx_pid" $(pgrep -P "$nginx_pid") | tr ' ' ',')
  server_oin[nginx]=$gateway_oin
  say "nginx ${target[nginx]} (pids ${proxy_pids[nginx]})"
fi

# 6. HAProxy: TLS + h2 on both legs, verify required both ways, one thread per core.
if wants haproxy; then
  port=$(free_port)
  cat "$pki/gateway.crt" "$pki/gateway.key" >"$run_dir/haproxy-gateway.pem"
  cat >"$run_dir/haproxy.cfg" <<EOF
global
  nbthread $(nproc)
  maxconn 4096
  ssl-server-verify required
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  http-reuse always
frontend perf
  bind 127.0.0.1:$port ssl crt $run_dir/haproxy-gateway.pem ca-file $pki/ca.crt verify required alpn h2
  default_backend endpoint
backend endpoint
  server ep 127.0.0.1:$endpoint_port ssl crt $run_dir/haproxy-gateway.pem ca-file $pki/ca.crt verify required verifyhost localhost sni str(localhost) alpn h2
EOF
  haproxy -db -f "$run_dir/haproxy.cfg" >"$run_dir/haproxy.log" 2>&1 &
  haproxy_pid=$!
  pids+=("$haproxy_pid")
  wait_for_port "$port" "$haproxy_pid" haproxy
  target[haproxy]="127.0.0.1:$port"
  proxy_pids[haproxy]=$haproxy_pid
  server_oin[haproxy]=$gateway_oin
  say "haproxy ${target[haproxy]} (pid $haproxy_pid)"
fi

target[direct]="127.0.0.1:$endpoint_port"
proxy_pids[direct]=""
server_oin[direct]=$brp_oin

# 7. The runs: round by round, every size and concurrency, the setups in a rotating order.
runs="$run_dir/runs.jsonl"
: >"$runs"
failed=0
read -r -a setup_list <<<"$setups"
for round in $(seq 1 "$rounds"); do
  for size in $sizes; do
    for conc in $concurrency; do
      n=${#setup_list[@]}
      for i in $(seq 0 $((n - 1))); do
        s=${setup_list[$(((i + round - 1) % n))]}
        case "$s" in
          direct) rpc=answer; cert=gateway; purpose=BRP-bevraging ;;   # the endpoint admits the gateway only
          knooppunt) rpc=request; cert=groningen; purpose=BRP-bevraging ;;
          knooppunt-filter) rpc=request; cert=groningen; purpose=BRP-bijhouding ;;
          *) rpc=answer; cert=groningen; purpose=BRP-bevraging ;;
        esac
        say "round $round/$rounds: $s, $size bytes, $conc in flight"
        recorder=""
        if [ -n "$perf_dir" ] && [ "$round" -eq 1 ] && [[ "$s" == knooppunt* ]]; then
          mkdir -p "$perf_dir"
          (sleep 1 && exec perf record -q -e cpu-clock --call-graph dwarf,16384 -F 299 \
            -p "$gateway_pid" -o "$perf_dir/$s-$size-$conc.data" -- sleep "$seconds") \
            >"$run_dir/perf.log" 2>&1 &
          recorder=$!
        fi
        if ! "$loadgen_bin" --label="$s" --target="${target[$s]}" --rpc="$rpc" \
            --cert="$pki/$cert.crt" --key="$pki/$cert.key" --ca="$pki/ca.crt" \
            --server_oin="${server_oin[$s]}" --sender="$groningen_oin" --recipient="$brp_oin" \
            --purpose="$purpose" --request_bytes="$size" --reply_bytes="$size" \
            --concurrency="$conc" --seconds="$seconds" --warmup_seconds=1 \
            --proxy_pids="${proxy_pids[$s]}" --endpoint_pids="$endpoint_pid" \
            >>"$runs" 2>"$run_dir/loadgen.err"; then
          cat "$run_dir/loadgen.err" >&2
          say "run FAILED: $s, $size bytes, $conc in flight"
          failed=1
        fi
        if [ -n "$recorder" ]; then wait "$recorder" || say "perf record failed: $(cat "$run_dir/perf.log")"; fi
      done
    done
  done
done

# 8. Idle connections held by the gateway.
if [ "$idle" -gt 0 ] && { wants knooppunt || wants knooppunt-filter; }; then
  say "opening $idle idle mTLS connections to the gateway"
  if ! "$loadgen_bin" --label=knooppunt --idle_connections="$idle" --seconds=5 \
      --target="${target[knooppunt]:-${target[knooppunt-filter]}}" --cert="$pki/groningen.crt" \
      --key="$pki/groningen.key" --ca="$pki/ca.crt" --server_oin="$gateway_oin" \
      --proxy_pids="$gateway_pid" >>"$runs" 2>"$run_dir/loadgen.err"; then
    cat "$run_dir/loadgen.err" >&2
    say "idle-connection run FAILED"
    failed=1
  fi
fi

# 9. Table and JSON.
summary_args=("$runs")
[ -n "$json" ] && summary_args+=(--json="$json")
python3 "$script_dir/summarize.py" "${summary_args[@]}"
exit "$failed"
