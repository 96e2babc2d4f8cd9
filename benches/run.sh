#!/usr/bin/env bash
# Load benchmarks of lpiotia-mqtt against Mosquitto 2.0.x on this machine.
#
# Each scenario runs against a fresh broker (fresh data directory), the brokers alternating
# over several rounds. The broker is pinned to CPU 0 and the generator (benches/load) to
# CPU 1. The broker's CPU time and peak RSS come from /proc/PID/stat and /proc/PID/status.
# The output is a Markdown table of medians and ratios ours/Mosquitto.
#
# Usage: benches/run.sh [--quick] [--rounds N] [--only SCENARIO,...] [--out DIR] [--broker-bin PATH]
#   --quick   one round, shorter runs, no 20000-connection step (about 3 minutes)
#   --rounds  rounds of the full run (default 3, about 14 minutes)
#   --only    comma-separated scenarios, among: fanin-q0 fanin-q1 sweep-q1 sweep-q0
#             fanout-q0 fanout-q1 latency-q0 latency-q1 conn-5000 conn-20000 conn-argon2
#             tls overload durable-q1
#   --out     directory for results.tsv, summary.md and broker logs (default: a new /tmp dir)
#   --broker-bin  lpiotia-mqtt binary to test as it is. The default is target/release/lpiotia-mqtt,
#             rebuilt with `cargo build --release` when a source file is newer
#
# Needs: mosquitto and mosquitto_passwd (Debian package mosquitto),
# taskset (util-linux), cargo. LOAD_TARGET_DIR sets where the generator is built (default
# benches/load/target). The broker is built in CARGO_TARGET_DIR or target/.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
rounds=3
only=""
out=""
broker_bin=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; rounds=1; shift ;;
        --rounds) rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --broker-bin) broker_bin=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in mosquitto mosquitto_passwd taskset cargo; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found; install it first" >&2; exit 1; }
done

out=${out:-$(mktemp -d /tmp/lpbench.XXXXXX)}
mkdir -p "$out"
work=$(mktemp -d /tmp/lpbench-work.XXXXXX)
results=$out/results.tsv
: > "$results"

# Ports on 127.0.0.1. Each broker is stopped before the next starts, but the ports still differ
# so that a socket in TIME_WAIT from one broker never delays the other.
ours_port=21883
ours_tls_port=28883
mosquitto_port=31883
mosquitto_tls_port=38883

broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Idle connections need one descriptor each in the broker and in the generator.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)

# --- Builds -----------------------------------------------------------------------------

if [[ -z "$broker_bin" ]]; then
    broker_bin=${CARGO_TARGET_DIR:-$root/target}/release/lpiotia-mqtt
    newer_sources=""
    if [[ -x "$broker_bin" ]]; then
        newer_sources=$(find "$root/src" "$root/broker" "$root/auth" "$root/config" "$root/certs" \
            "$root/Cargo.toml" "$root/Cargo.lock" -newer "$broker_bin" -type f 2>/dev/null | head -1)
    fi
    if [[ ! -x "$broker_bin" || -n "$newer_sources" ]]; then
        echo "run.sh: building the broker (cargo build --release)" >&2
        (cd "$root" && cargo build --release --bin lpiotia-mqtt)
    fi
fi
[[ -x "$broker_bin" ]] || { echo "run.sh: broker binary $broker_bin not found" >&2; exit 1; }
echo "run.sh: building the generator" >&2
load_target=${LOAD_TARGET_DIR:-$root/benches/load/target}
(cd "$root/benches/load" && CARGO_TARGET_DIR=$load_target cargo build --release --quiet)
generator=$load_target/release/mqtt-load

# --- Credentials and certificates -------------------------------------------------------

user=bench
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export MQTT_LOAD_PASSWORD=$password
# Mosquitto's PBKDF2-SHA512 ($7$) file, read by both brokers, so that both spend the same
# time per password check.
mosquitto_passwd -c -b "$work/mosquitto.passwd" "$user" "$password"
# Our CA and server certificate, and a password file with our default hash, argon2id.
template=$work/template
"$broker_bin" certs init --no-passphrase --data-dir "$template" --log-level warn >/dev/null
printf '%s\n' "$password" | "$broker_bin" passwd --file "$template/passwd" --log-level warn add "$user" --password-stdin >/dev/null

# --- Broker configuration and lifecycle ----------------------------------------------------

# Writes our config for scenario $1, broker variant $2, data directory $3.
write_ours_config() {
    local scenario=$1 variant=$2 data=$3
    local persistence=false mode=durable sys_interval=10 password_file=$work/mosquitto.passwd
    [[ $scenario == durable-* ]] && persistence=true
    [[ $variant == ours-relaxed ]] && mode=relaxed
    [[ $scenario == overload ]] && sys_interval=1
    [[ $variant == ours-argon2 ]] && password_file=$data/passwd
    cat <<EOF
data_dir = "$data"
password_file = "$password_file"
sys_interval_secs = $sys_interval

[limits]
max_inflight_messages = 20
max_queued_messages_clean = 10000
max_queued_bytes = "16MiB"

[persistence]
enabled = $persistence
mode = "$mode"

[listeners.lan]
bind = "127.0.0.1:$ours_port"
allow = ["127.0.0.0/8"]

[listeners.tls]
enabled = $([[ $scenario == tls ]] && echo true || echo false)
bind = "127.0.0.1:$ours_tls_port"
allow = ["127.0.0.0/8"]
require_certificate = false

[listeners.ws]
enabled = false
EOF
}

# Writes Mosquitto's config for scenario $1, data directory $2.
write_mosquitto_config() {
    local scenario=$1 data=$2
    cat <<EOF
user root
per_listener_settings false
allow_anonymous false
password_file $work/mosquitto.passwd
max_inflight_messages 20
max_queued_messages 10000
max_queued_bytes 16777216
sys_interval $([[ $scenario == overload ]] && echo 1 || echo 10)
persistence $([[ $scenario == durable-* ]] && echo true || echo false)
persistence_location $data/
log_dest stderr
listener $mosquitto_port 127.0.0.1
EOF
    if [[ $scenario == tls ]]; then
        cat <<EOF
listener $mosquitto_tls_port 127.0.0.1
certfile $data/server.crt
keyfile $data/server.key
require_certificate false
EOF
    fi
}

# Waits until 127.0.0.1:$1 accepts TCP connections (at most 10 s).
wait_for_port() {
    local port=$1 attempt
    for attempt in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "run.sh: nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

# Starts broker variant $1 for scenario $2 on CPU 0, and sets broker_pid, port and tls_port.
start_broker() {
    local variant=$1 scenario=$2
    local data=$work/data-$variant-$scenario
    rm -rf "$data"
    cp -a "$template" "$data"
    case "$variant" in
        mosquitto)
            write_mosquitto_config "$scenario" "$data" > "$data/mosquitto.conf"
            taskset -c 0 mosquitto -c "$data/mosquitto.conf" 2>>"$out/$variant.log" &
            broker_pid=$!
            port=$mosquitto_port
            tls_port=$mosquitto_tls_port
            ;;
        ours*)
            write_ours_config "$scenario" "$variant" "$data" > "$data/config.toml"
            taskset -c 0 "$broker_bin" serve --config "$data/config.toml" 2>>"$out/$variant.log" &
            broker_pid=$!
            port=$ours_port
            tls_port=$ours_tls_port
            ;;
    esac
    wait_for_port "$port"
}

# Stops the broker with SIGTERM, or SIGKILL when it still runs after 6 s.
stop_broker() {
    kill -TERM "$broker_pid" 2>/dev/null || true
    local attempt
    for attempt in $(seq 60); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
}

# User plus system CPU time of process $1 in clock ticks (fields 14 and 15 of stat).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# Peak RSS (VmHWM) of process $1 in KiB.
peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

clock_ticks=$(getconf CLK_TCK)

# --- Scenarios ----------------------------------------------------------------------------

if [[ $quick == 1 ]]; then
    duration=3; latency_duration=5; sweep_step=2; sweep_steps=6; overload_duration=5
else
    duration=4; latency_duration=10; sweep_step=3; sweep_steps=7; overload_duration=8
fi
# Leave room for the listener, store and log descriptors of the broker.
big_count=$(( fd_limit - 100 < 20000 ? fd_limit - 100 : 20000 ))
sources=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9

if [[ -n "$only" ]]; then
    scenarios=${only//,/ }
elif [[ $quick == 1 ]]; then
    scenarios="fanin-q0 fanin-q1 sweep-q1 fanout-q0 fanout-q1 latency-q1 conn-5000 conn-argon2 tls overload durable-q1"
else
    scenarios="fanin-q0 fanin-q1 sweep-q1 sweep-q0 fanout-q0 fanout-q1 latency-q0 latency-q1 conn-5000 conn-20000 conn-argon2 tls overload durable-q1"
fi

# Broker variants of scenario $1. Mosquitto is the baseline of each.
variants_of() {
    case "$1" in
        durable-*) echo "ours ours-relaxed mosquitto" ;;
        conn-argon2) echo "ours-argon2 mosquitto" ;;
        tls) echo "ours ours-argon2 mosquitto" ;;
        *) echo "ours mosquitto" ;;
    esac
}

# Median of the values of key $3 for broker $1, scenario $2 in results so far (empty if none).
median_of() {
    awk -F'\t' -v b="$1" -v s="$2" -v k="$3" '$2 == b && $3 == s && $4 == k { print $5 }' "$results" \
        | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# Generator arguments of scenario $1 for broker variant $2 (broker_pid and ports are set).
generator_args() {
    local scenario=$1 variant=$2
    local common=(--broker "127.0.0.1:$port" --username "$user" --broker-pid "$broker_pid" --run-id "lpb-$scenario")
    case "$scenario" in
        fanin-q0) echo flow "${common[@]}" --wildcard --publishers 8 --qos 0 --duration "$duration" ;;
        fanin-q1) echo flow "${common[@]}" --wildcard --publishers 8 --qos 1 --duration "$duration" ;;
        sweep-q1|sweep-q0)
            local qos=${scenario#sweep-q} start
            # Start below the full-speed rate this broker reached in this run, when it is known.
            start=$(median_of "$variant" "fanin-q$qos" delivered_rate)
            start=$(awk -v s="${start:-20000}" 'BEGIN { r = 0.7 * s; print (r < 1000 ? 1000 : int(r)) }')
            echo sweep "${common[@]}" --wildcard --publishers 8 --qos "$qos" --duration "$sweep_step" \
                --warmup 0.5 --drain 3 --start-rate "$start" --growth 1.5 --max-steps "$sweep_steps" ;;
        fanout-q0) echo flow "${common[@]}" --publishers 1 --subscribers 50 --qos 0 --duration "$duration" ;;
        fanout-q1) echo flow "${common[@]}" --publishers 1 --subscribers 50 --qos 1 --duration "$duration" ;;
        latency-q0|latency-q1)
            echo flow "${common[@]}" --publishers 1 --subscribers 1 --qos "${scenario#latency-q}" \
                --rate 2000 --duration "$latency_duration" --warmup 0 ;;
        conn-5000) echo connections "${common[@]}" --count 5000 --sources "$sources" ;;
        conn-20000) echo connections "${common[@]}" --count "$big_count" --sources "$sources" ;;
        # argon2id takes tens of milliseconds per check, so fewer connections, fewer at a time.
        conn-argon2) echo connections "${common[@]}" --count 60 --concurrency 10 --sources "$sources" ;;
        tls)
            echo tls --broker "127.0.0.1:$tls_port" --username "$user" --run-id lpb-tls \
                --parallel 100 --duration "$duration" ;;
        overload)
            echo flow "${common[@]}" --wildcard --publishers 4 --subscribers 1 --slow-subscribers 1 \
                --slow-rate 200 --qos 1 --rate 5000 --payload 2048 --duration "$overload_duration" \
                --drain 20 --sys-dropped-wait 2.5 ;;
        # A longer drain, so that messages still queued when publishing stops are not counted as lost.
        durable-q1) echo flow "${common[@]}" --wildcard --publishers 8 --qos 1 --persistent --duration "$duration" --drain 15 ;;
        *) echo "run.sh: unknown scenario $scenario" >&2; return 1 ;;
    esac
}

# Runs scenario $2 against broker variant $3 in round $1 and appends its results.
run_one() {
    local round=$1 scenario=$2 variant=$3 run_started=$SECONDS
    start_broker "$variant" "$scenario"
    local args
    args=$(generator_args "$scenario" "$variant")
    local ticks_before wall_before output status=0
    ticks_before=$(cpu_ticks "$broker_pid")
    wall_before=$(date +%s.%N)
    # shellcheck disable=SC2086 # the arguments are single words by construction
    output=$(taskset -c 1 "$generator" $args 2>>"$out/generator.log") || status=$?
    local ticks_after wall_after peak
    ticks_after=$(cpu_ticks "$broker_pid")
    wall_after=$(date +%s.%N)
    peak=$(peak_rss_kib "$broker_pid")
    stop_broker
    if [[ $status != 0 ]]; then
        echo "run.sh: round $round, $scenario on $variant: generator failed (exit $status), see $out/generator.log" >&2
    fi
    {
        printf '%s\n' "$output" | awk -F'\t' -v p="$round	$variant	$scenario" 'NF == 2 { print p "\t" $0 }'
        awk -v p="$round	$variant	$scenario" -v t0="$ticks_before" -v t1="$ticks_after" \
            -v w0="$wall_before" -v w1="$wall_after" -v hz="$clock_ticks" -v peak="$peak" 'BEGIN {
                cpu = (t1 - t0) / hz
                printf "%s\tbroker_cpu_secs\t%.3f\n", p, cpu
                printf "%s\tbroker_cpu_pct\t%.1f\n", p, 100 * cpu / (w1 - w0)
                printf "%s\tbroker_peak_rss_mib\t%.1f\n", p, peak / 1024
            }'
    } >> "$results"
    echo "run.sh: round $round, $scenario, $variant: done in $(( SECONDS - run_started )) s" >&2
}

# The generator against the sink (benches/load `sink`: no routing, no queues) on CPU 0: the
# rates it reaches there bound what it can measure on a broker.
check_generator() {
    local sink_port=18830 sink_pid scenario args output
    taskset -c 0 "$generator" sink --bind "127.0.0.1:$sink_port" --lifetime-secs 120 2>>"$out/generator.log" &
    sink_pid=$!
    wait_for_port "$sink_port"
    for scenario in fanin-q0 fanin-q1 fanout-q0; do
        port=$sink_port
        broker_pid=$sink_pid
        args=$(generator_args "$scenario" sink)
        # shellcheck disable=SC2086 # the arguments are single words by construction
        output=$(taskset -c 1 "$generator" $args 2>>"$out/generator.log") || true
        printf '%s\n' "$output" | awk -F'\t' -v p="1	sink	sink-$scenario" 'NF == 2 { print p "\t" $0 }' >> "$results"
    done
    kill -TERM "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
    broker_pid=""
    echo "run.sh: generator checked against the sink" >&2
}

started=$(date +%s)
check_generator
for round in $(seq "$rounds"); do
    for scenario in $scenarios; do
        variants=$(variants_of "$scenario")
        # Alternate which broker goes first, so that neither always runs on a warmer machine.
        if (( round % 2 == 0 )); then
            variants=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' ')
        fi
        for variant in $variants; do
            run_one "$round" "$scenario" "$variant"
        done
    done
done
elapsed=$(( $(date +%s) - started ))

{
    echo "Run started $(date -u -d "@$started" '+%Y-%m-%d %H:%M UTC'), $rounds round(s), ${elapsed} s; $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)."
    echo "Mosquitto: $(mosquitto -h 2>/dev/null | awk 'NR == 1 { print $3 }'); broker on CPU 0, generator on CPU 1."
    echo
    "$generator" report "$results"
} | tee "$out/summary.md"
"$generator" report --all "$results" > "$out/all-values.md"
echo "run.sh: results in $out (results.tsv, summary.md, all-values.md, broker logs)" >&2
