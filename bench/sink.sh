#!/usr/bin/env bash
# bench/sink.sh — receive-only SMTP sink benchmark: `relaymail sink` vs. Postfix
# `smtp-sink` and Python `aiosmtpd`, all on loopback, in the same run.
#
# The load generator is Postfix's `smtp-source`. It sends N messages of L bytes
# over 1 and over 10 parallel SMTP sessions (one connection per session, `-d`).
# Three servers receive them:
#   relaymail  `relaymail sink`, Maildir store: file and directory fsync'd before the 250;
#   smtp-sink  Postfix's test server, `-d` (one dump file per message, no fsync at all);
#   aiosmtpd   Python's aiosmtpd with a small Maildir handler (generated below) that
#              writes tmp/, fsyncs the file, renames it into new/ and fsyncs new/
#              before answering 250. The disk work runs in aiosmtpd's thread pool, so
#              sessions overlap as in relaymail.
# Figures: messages/second (wall time of smtp-source; median of BENCH_REPEAT runs),
# and the server process's RSS (VmRSS from /proc/PID/status) idle after start, after
# its first 1,000 messages, after all throughput runs, and while it receives one
# ~50 MiB message (sampled every 50 ms; the maximum and VmHWM are reported).
# Every run checks that exactly the expected number of messages was stored.
#
# smtp-source and smtp-sink come from Debian's postfix package, fetched with
# `apt-get download` and unpacked with `dpkg -x` into a temp dir (as in
# bench/submit.sh): Postfix is not installed and no Postfix daemon runs.
# aiosmtpd is Debian's python3-aiosmtpd (a library package, installed if missing).
#
# Usage (as root, Debian 12):  bash bench/sink.sh
# Environment knobs (defaults in brackets):
#   BENCH_OUT        results dir for raw output [bench/results]; files are named sink-*
#   BENCH_ONLY       all | peers | relaymail   [all]
#   RELAYMAIL_BIN    relaymail binary [target/release/relaymail, built if missing]
#   BENCH_NO_BUILD   1 = skip relaymail (with a message) instead of building it
#   BENCH_PEERS      peers to measure ["smtp-sink aiosmtpd"]
#   BENCH_MESSAGES   messages per throughput run [1000]
#   BENCH_MSG_LEN    payload bytes per message (smtp-source -l) [4096]
#   BENCH_SESSIONS   session counts to run ["1 10"]
#   BENCH_REPEAT     throughput runs per server and session count; median reported [3]
#   BENCH_BIG_MB     size of the big message in MiB [50]
#   BENCH_SAMPLE_MS  RSS sampling interval during the big message, ms [50]
#   BENCH_FLOOR_OPS  operations for the in-process fsync floor [300]
#   BENCH_TMPDIR     where the temp dir (stores, messages) goes [$TMPDIR or /tmp];
#                    it must be on the disk you want to measure, not a tmpfs.
set -euo pipefail

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
BENCH_OUT=${BENCH_OUT:-$REPO_ROOT/bench/results}
BENCH_ONLY=${BENCH_ONLY:-all}
RELAYMAIL_BIN=${RELAYMAIL_BIN:-$REPO_ROOT/target/release/relaymail}
BENCH_NO_BUILD=${BENCH_NO_BUILD:-0}
BENCH_PEERS=${BENCH_PEERS:-smtp-sink aiosmtpd}
MESSAGES=${BENCH_MESSAGES:-1000}
MSG_LEN=${BENCH_MSG_LEN:-4096}
SESSIONS=${BENCH_SESSIONS:-1 10}
REPEAT=${BENCH_REPEAT:-3}
BIG_MB=${BENCH_BIG_MB:-50}
SAMPLE_MS=${BENCH_SAMPLE_MS:-50}
FLOOR_OPS=${BENCH_FLOOR_OPS:-300}

SENDER=bench@example.com
RCPT=rcpt@example.com
HELO=client.example.com

case $BENCH_ONLY in all|peers|relaymail) ;; *) echo "BENCH_ONLY must be all, peers or relaymail" >&2; exit 2 ;; esac

# Per-server state, filled by the setup_* and start_* functions:
#   PORT[s]     loopback port the server listens on
#   SPID[s]     process id of the running server
#   STORE[s]    directory whose regular files are the stored messages (counted)
#   CMDLINE[s]  the command line, for the report
#   DURABLE[s]  what the server makes durable before its 250, for the report
declare -A PORT SPID STORE CMDLINE DURABLE
SERVERS=()         # servers that will be measured, in table order
T=""               # the temp dir
PYTHON=/usr/bin/python3
PFROOT=""          # unpacked postfix package
SMTP_SOURCE=""


# --------------------------------------------------------------------------
# Temp dir and cleanup
# --------------------------------------------------------------------------

# Stop the servers we started (by their recorded pid only), then remove the temp dir.
cleanup() {
    local s pid
    for s in "${!SPID[@]}"; do
        pid=${SPID[$s]}
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n $T && -d $T ]]; then
        rm -rf -- "$T"
    fi
}


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

# Refresh the package lists (`apt-get download` needs them) and install what is
# missing: Debian's python3 and aiosmtpd. No MTA is installed.
ensure_tools() {
    log "apt-get update"
    apt-get update -qq >/dev/null
    local need=()
    [[ -x $PYTHON ]] || need+=(python3)
    if [[ " $BENCH_PEERS " == *" aiosmtpd "* && $BENCH_ONLY != relaymail ]] &&
        ! { [[ -x $PYTHON ]] && "$PYTHON" -c 'import aiosmtpd' 2>/dev/null; }; then
        need+=(python3-aiosmtpd)
    fi
    apt_install "${need[@]}"
}


# The Postfix package provides the load generator (always) and the smtp-sink peer.
# Its binaries have RUNPATH /usr/lib/postfix, which exists only when Postfix is
# installed, so every call gets LD_LIBRARY_PATH pointing at our copy.
setup_postfix_tools() {
    fetch_deb postfix
    PFROOT=$T/root-postfix
    SMTP_SOURCE=$PFROOT/usr/sbin/smtp-source
    [[ -x $SMTP_SOURCE && -x $PFROOT/usr/sbin/smtp-sink ]] || die "smtp-source/smtp-sink not found in the postfix package"
}

# pf_run CMD...: run a program from the unpacked Postfix package.
pf_run() { LD_LIBRARY_PATH=$PFROOT/usr/lib/postfix "$@"; }

# Three free loopback ports, chosen by the kernel (bound and released at once).
pick_ports() {
    local s ports
    # shellcheck disable=SC2207  # the output is three numbers
    ports=($("$PYTHON" - "${#SERVERS[@]}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
    ))
    local i=0
    for s in "${SERVERS[@]}"; do
        PORT[$s]=${ports[$i]}
        i=$((i + 1))
    done
}

# --------------------------------------------------------------------------
# Messages and helpers (generated once per run)
# --------------------------------------------------------------------------
TOKEN="rmsink-$$-$RANDOM"   # marker in the big message's Subject

# A ~BIG_MB MiB MIME message: a short text part plus a base64 attachment in
# 76-char lines (LF line ends: smtp-source -F sends each line with CRLF).
make_big_message() {
    MSG_BIG=$T/msg-big.eml
    local target=$((BIG_MB * 1024 * 1024))
    # Each 77-byte line (76 chars + LF) carries 57 raw bytes; ~1 KB is left for headers.
    local lines=$(((target - 1024) / 77))
    local raw=$((lines * 57))
    {
        printf 'From: Bench Sender <%s>\n' "$SENDER"
        printf 'To: Bench Recipient <%s>\n' "$RCPT"
        printf 'Subject: Quarterly archive %s\n' "$TOKEN"
        printf 'Date: %s\n' "$(date -R)"
        printf 'Message-ID: <%s.big@example.com>\n' "$TOKEN"
        printf 'MIME-Version: 1.0\n'
        printf 'Content-Type: multipart/mixed; boundary="=_bench_boundary"\n\n'
        printf -- '--=_bench_boundary\nContent-Type: text/plain; charset=utf-8\n\n'
        printf 'The archive for this quarter is attached.\n\n'
        printf -- '--=_bench_boundary\nContent-Type: application/octet-stream; name="archive.bin"\n'
        printf 'Content-Disposition: attachment; filename="archive.bin"\n'
        printf 'Content-Transfer-Encoding: base64\n\n'
        head -c "$raw" /dev/urandom | base64 -w 76
        printf -- '--=_bench_boundary--\n'
    } >"$MSG_BIG"
    log "big message: $(stat -c %s "$MSG_BIG") bytes"
}

# The aiosmtpd server with a durable Maildir handler: tmp/NAME, write, fsync,
# rename to new/NAME, fsync new/, then 250. The blocking disk work runs in the
# event loop's default thread pool so that parallel sessions overlap. No size
# limit (aiosmtpd's default is 32 MiB) so that the big message is accepted.
write_aiosmtpd_server() {
    cat >"$T/aiosmtpd_maildir.py" <<'PY'
"""aiosmtpd Maildir sink for bench/sink.sh: python3 aiosmtpd_maildir.py HOST PORT DIR"""
import asyncio, itertools, os, socket, sys, time
from aiosmtpd.smtp import SMTP

class MaildirHandler:
    def __init__(self, root):
        self.root = root
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        self.newfd = os.open(os.path.join(root, "new"), os.O_RDONLY | os.O_DIRECTORY)
        self.seq = itertools.count()
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def store(self, data):
        now = time.time()
        name = "%d.M%06dP%dQ%d.%s" % (now, (now % 1) * 1e6, os.getpid(), next(self.seq), self.host)
        tmp = os.path.join(self.root, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.root, "new", name))
        os.fsync(self.newfd)

    async def handle_DATA(self, server, session, envelope):
        await asyncio.get_running_loop().run_in_executor(None, self.store, envelope.original_content)
        return "250 2.0.0 OK"

async def main(host, port, root):
    handler = MaildirHandler(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.example.com", decode_data=False, data_size_limit=None),
        host, int(port))
    print(f"aiosmtpd: listening on {host}:{port}, storing to {root}", file=sys.stderr, flush=True)
    await server.serve_forever()

asyncio.run(main(*sys.argv[1:4]))
PY
}

# The RSS sampler: SAMPLER PID INTERVAL_MS OUT STOPFILE writes "ms_since_start rss_kb"
# lines until STOPFILE exists or the process is gone.
write_sampler() {
    cat >"$T/rss_sampler.py" <<'PY'
import os, sys, time
pid, interval, out, stop = sys.argv[1], int(sys.argv[2]) / 1000, sys.argv[3], sys.argv[4]
t0 = time.monotonic()
with open(out, "w") as f:
    while True:
        try:
            with open(f"/proc/{pid}/status") as st:
                rss = next(int(l.split()[1]) for l in st if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            break
        f.write("%d %d\n" % ((time.monotonic() - t0) * 1000, rss))
        f.flush()
        if os.path.exists(stop):
            break
        time.sleep(interval)
PY
}

# rss_kb PID [FIELD]: VmRSS (or another /proc/PID/status field) in KiB.
rss_kb() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status"; }

# Count the stored messages of server $1.
count_stored() { find "${STORE[$1]}" -maxdepth 1 -type f | wc -l; }

# Wait until the server on $2 answers with a 220 banner (we then QUIT), or die.
wait_ready() {
    local s=$1 port=$2 i
    for ((i = 0; i < 150; i++)); do
        kill -0 "${SPID[$s]}" 2>/dev/null || {
            cat "$BENCH_OUT/sink-$s.stderr" >&2
            die "$s exited during start-up"
        }
        if (
            exec 3<>"/dev/tcp/127.0.0.1/$port"
            IFS= read -r -t 2 line <&3
            printf 'QUIT\r\n' >&3
            [[ $line == 220* ]]
        ) 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$s did not answer on 127.0.0.1:$port within 15 s"
}

# --------------------------------------------------------------------------
# Servers: setup (files, config) and start (background process, then wait)
# --------------------------------------------------------------------------

# relaymail: `relaymail sink` with a config file (host name, no syslog, a size
# limit above the big message: the default of 50 MiB would refuse it) and the
# listener, store and state dir on the command line. One JSON line per stored
# message goes to stdout, which is kept and counted.
setup_relaymail() {
    build_relaymail || return 1
    "$RELAYMAIL_BIN" sink --help >/dev/null 2>&1 ||
        die "$RELAYMAIL_BIN has no working 'sink' subcommand (rebuild it)"
    mkdir -p "$T/relaymail"
    cat >"$T/relaymail/relaymail.toml" <<EOF
hostname = "bench.example.com"
[log]
syslog = false
[sink]
max_message_size = "1GiB"
EOF
    STORE[relaymail]=$T/relaymail/mail/new
    DURABLE[relaymail]="file + dir fsync"
    echo "relaymail $("$RELAYMAIL_BIN" --version 2>/dev/null | head -1 || echo unknown) ($BUILD_NOTE)" >>"$T/versions.txt"
}

start_relaymail() {
    local port=${PORT[relaymail]}
    CMDLINE[relaymail]="RELAYMAIL_CONFIG=$T/relaymail/relaymail.toml $RELAYMAIL_BIN sink --listen 127.0.0.1:$port --store maildir:$T/relaymail/mail --state-dir $T/relaymail/state"
    RELAYMAIL_CONFIG=$T/relaymail/relaymail.toml "$RELAYMAIL_BIN" sink \
        --listen "127.0.0.1:$port" --store "maildir:$T/relaymail/mail" --state-dir "$T/relaymail/state" \
        >"$BENCH_OUT/sink-relaymail.events.jsonl" 2>"$BENCH_OUT/sink-relaymail.stderr" &
    SPID[relaymail]=$!
    wait_ready relaymail "$port"
    mkdir -p "${STORE[relaymail]}"   # created by relaymail at start-up; make sure for counting
}

# smtp-sink: `-d TEMPLATE` writes one file per transaction (TEMPLATE + random hex);
# it never fsyncs. Started by root it requires `-u`; it drops to nobody, who owns
# the dump dir. `-h` sets the greeting's host name; the backlog is 256.
setup_smtp_sink() {
    mkdir -p "$T/smtp-sink/dump"
    chown nobody "$T/smtp-sink/dump"
    STORE[smtp-sink]=$T/smtp-sink/dump
    DURABLE[smtp-sink]="none (no fsync)"
}

start_smtp_sink() {
    local port=${PORT[smtp-sink]}
    CMDLINE[smtp-sink]="LD_LIBRARY_PATH=$PFROOT/usr/lib/postfix $PFROOT/usr/sbin/smtp-sink -u nobody -h bench.example.com -d $T/smtp-sink/dump/m. 127.0.0.1:$port 256"
    # A plain command (not the pf_run function, which would leave a subshell in
    # between) so that $! is smtp-sink's own pid.
    LD_LIBRARY_PATH=$PFROOT/usr/lib/postfix "$PFROOT/usr/sbin/smtp-sink" -u nobody -h bench.example.com \
        -d "$T/smtp-sink/dump/m." "127.0.0.1:$port" 256 \
        >"$BENCH_OUT/sink-smtp-sink.stdout" 2>"$BENCH_OUT/sink-smtp-sink.stderr" &
    SPID[smtp-sink]=$!
    wait_ready smtp-sink "$port"
}

setup_aiosmtpd() {
    write_aiosmtpd_server
    STORE[aiosmtpd]=$T/aiosmtpd/mail/new
    DURABLE[aiosmtpd]="file + dir fsync"
    echo "aiosmtpd $("$PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)') (python $("$PYTHON" -c 'import platform; print(platform.python_version())'))" >>"$T/versions.txt"
}

start_aiosmtpd() {
    local port=${PORT[aiosmtpd]}
    CMDLINE[aiosmtpd]="$PYTHON $T/aiosmtpd_maildir.py 127.0.0.1 $port $T/aiosmtpd/mail"
    "$PYTHON" -u "$T/aiosmtpd_maildir.py" 127.0.0.1 "$port" "$T/aiosmtpd/mail" \
        >"$BENCH_OUT/sink-aiosmtpd.stdout" 2>"$BENCH_OUT/sink-aiosmtpd.stderr" &
    SPID[aiosmtpd]=$!
    wait_ready aiosmtpd "$port"
}

# Dispatch to the per-server function: "smtp-sink" -> setup_smtp_sink etc.
server_fn() { "$1_${2//-/_}"; }

# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------

# Record one RSS figure: server, phase, KiB.
note_rss() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$BENCH_OUT/sink-rss.tsv"; }

# The disk floor: in one python3 process, per operation: create a file, write a
# message of the benchmark's size, fsync it, rename it into new/, fsync new/.
# 1000 / median ms is the most a one-session durable sink could do on this disk.
measure_floor() {
    mkdir -p "$T/floor/tmp" "$T/floor/new"
    "$PYTHON" - "$T/floor" "$FLOOR_OPS" "$((MSG_LEN + 400))" "$BENCH_OUT/sink-floor.json" <<'PY'
import json, os, statistics, sys, time
root, ops, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = (b"x" * 77 + b"\n") * (size // 78) + b"\n" * (size % 78)
ndir = os.open(os.path.join(root, "new"), os.O_RDONLY | os.O_DIRECTORY)
times = []
for i in range(ops + 20):                 # the first 20 are warm-up
    tmp = os.path.join(root, "tmp", f"{i}")
    t0 = time.perf_counter_ns()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, os.path.join(root, "new", f"{i}"))
    os.fsync(ndir)
    t1 = time.perf_counter_ns()
    if i >= 20:
        times.append((t1 - t0) / 1e6)
times.sort()
json.dump({"ops": ops, "bytes": len(data), "median_ms": statistics.median(times),
           "p10_ms": times[len(times) // 10], "p90_ms": times[len(times) * 9 // 10]},
          open(out, "w"), indent=1)
PY
    log "fsync floor: median $("$PYTHON" -c 'import json,sys;print("%.3f"%json.load(open(sys.argv[1]))["median_ms"])' "$BENCH_OUT/sink-floor.json") ms/message"
}

# run_load SERVER SESSIONS REP: MESSAGES messages of MSG_LEN bytes over SESSIONS
# parallel sessions, each session one connection (-d); wall time of smtp-source.
run_load() {
    local s=$1 n=$2 rep=$3 before after t0 t1 secs logf
    logf=$BENCH_OUT/sink-load-$s-s$n-r$rep.txt
    before=$(count_stored "$s")
    t0=$(date +%s%N)
    if ! pf_run "$SMTP_SOURCE" -d -s "$n" -m "$MESSAGES" -l "$MSG_LEN" -f "$SENDER" -t "$RCPT" -M "$HELO" \
        "127.0.0.1:${PORT[$s]}" >"$logf" 2>&1; then
        cat "$logf" >&2
        die "$s: smtp-source failed (sessions $n, run $rep)"
    fi
    t1=$(date +%s%N)
    after=$(count_stored "$s")
    if ((after - before != MESSAGES)); then
        die "$s: $((after - before)) messages stored, expected $MESSAGES (sessions $n, run $rep)"
    fi
    if [[ $s == relaymail ]]; then
        local events
        events=$(wc -l <"$BENCH_OUT/sink-relaymail.events.jsonl")
        ((events == after)) || die "relaymail: $events JSON event lines on stdout, $after messages stored"
    fi
    secs=$("$PYTHON" -c 'import sys; print("%.4f" % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e9))' "$t0" "$t1")
    printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$n" "$rep" "$MESSAGES" "$secs" >>"$BENCH_OUT/sink-runs.tsv"
    log "$s: $n session(s), run $rep: $MESSAGES messages in $secs s ($("$PYTHON" -c 'import sys; print("%.0f" % (int(sys.argv[1]) / float(sys.argv[2])))' "$MESSAGES" "$secs") msg/s)"
}

# The big message: sample the server's VmRSS every SAMPLE_MS while smtp-source
# sends the file (-F), then check it was stored whole.
run_big() {
    local s=$1 pid=${SPID[$1]} before after t0 t1 size biggest bigfile samples stop
    samples=$BENCH_OUT/sink-big-$s.rss.txt
    stop=$T/stop-sampler-$s
    before=$(count_stored "$s")
    note_rss "$s" before_big "$(rss_kb "$pid")"
    "$PYTHON" "$T/rss_sampler.py" "$pid" "$SAMPLE_MS" "$samples" "$stop" &
    local sampler=$!
    while [[ ! -s $samples ]]; do sleep 0.01; done
    t0=$(date +%s%N)
    if ! pf_run "$SMTP_SOURCE" -F "$MSG_BIG" -f "$SENDER" -t "$RCPT" -M "$HELO" \
        "127.0.0.1:${PORT[$s]}" >"$BENCH_OUT/sink-big-$s.txt" 2>&1; then
        touch "$stop"
        cat "$BENCH_OUT/sink-big-$s.txt" >&2
        die "$s: smtp-source failed on the big message"
    fi
    t1=$(date +%s%N)
    touch "$stop"
    wait "$sampler"
    note_rss "$s" after_big "$(rss_kb "$pid")"
    note_rss "$s" hwm "$(rss_kb "$pid" VmHWM)"
    note_rss "$s" big_peak "$(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$samples")"
    printf '%s\t%s\t%s\n' "$s" "$(((t1 - t0) / 1000000))" "$(wc -l <"$samples")" >>"$BENCH_OUT/sink-big-ms.tsv"
    after=$(count_stored "$s")
    ((after - before == 1)) || die "$s: $((after - before)) messages stored for the big message, expected 1"
    size=$(stat -c %s "$MSG_BIG")
    # The largest stored file must be (about) the whole message and carry its marker.
    read -r biggest bigfile < <(find "${STORE[$s]}" -maxdepth 1 -type f -printf '%s %p\n' | sort -n | tail -1)
    ((biggest * 100 >= size * 95)) || die "$s: largest stored file is $biggest bytes, the message is $size bytes"
    grep -qF "$TOKEN" "$bigfile" || die "$s: the largest stored file does not hold the big message (marker $TOKEN)"
    log "$s: big message stored ($biggest bytes) in $(((t1 - t0) / 1000000)) ms, RSS peak $(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$samples") KiB"
}

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
report() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "kernel: $(uname -r)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
        echo "store filesystem: $(fs_type "$T") ($(df -P "$T" | awk 'NR==2{print $1}'))"
        echo "load: $MESSAGES messages x $MSG_LEN payload bytes, sessions: $SESSIONS, $REPEAT run(s) each; big: $(stat -c %s "$MSG_BIG") bytes"
        sed 's/^/version: /' "$T/versions.txt"
        echo
        echo "commands:"
        local s
        for s in "${SERVERS[@]}"; do echo "  $s: ${CMDLINE[$s]}"; done
        echo "  load: LD_LIBRARY_PATH=$PFROOT/usr/lib/postfix $SMTP_SOURCE -d -s SESSIONS -m $MESSAGES -l $MSG_LEN -f $SENDER -t $RCPT -M $HELO 127.0.0.1:PORT"
        echo "  big:  LD_LIBRARY_PATH=$PFROOT/usr/lib/postfix $SMTP_SOURCE -F MSG_BIG -f $SENDER -t $RCPT -M $HELO 127.0.0.1:PORT"
        echo
        for s in "${SERVERS[@]}"; do echo "durability $s: ${DURABLE[$s]}"; done
    } >"$BENCH_OUT/sink-environment.txt"

    local durable=()
    for s in "${SERVERS[@]}"; do durable+=("$s=${DURABLE[$s]}"); done
    "$PYTHON" - "$BENCH_OUT" "$(stat -c %s "$MSG_BIG")" "$SESSIONS" "$SAMPLE_MS" "${durable[@]}" <<'PY' | tee "$BENCH_OUT/sink-summary.txt"
import collections, json, statistics, sys
out, big_size, sessions, sample_ms = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split()], sys.argv[4]
durable = dict(a.split("=", 1) for a in sys.argv[5:])
servers = list(durable)

rates = collections.defaultdict(list)
messages = 0
for line in open(f"{out}/sink-runs.tsv"):
    s, n, rep, msgs, secs = line.split("\t")
    messages = int(msgs)
    rates[(s, int(n))].append(int(msgs) / float(secs))
rss = collections.defaultdict(dict)
for line in open(f"{out}/sink-rss.tsv"):
    s, phase, kb = line.split("\t")
    rss[s][phase] = int(kb)
big_ms, big_samples = {}, {}
for line in open(f"{out}/sink-big-ms.tsv"):
    s, ms, n = line.split("\t")
    big_ms[s], big_samples[s] = int(ms), int(n)
floor = json.load(open(f"{out}/sink-floor.json"))

def med(s, n):
    v = rates.get((s, n))
    return statistics.median(v) if v else None

mib = lambda kb: kb / 1024
mb = lambda kb: kb * 1024 / 1e6

cols = ["server", "durable before 250"] + [f"msg/s {n}s" for n in sessions] + \
       ["RSS idle", "after 1st run", "after all runs", "big: before", "big: peak", "big: growth", "VmHWM", "big ms"]
rows = []
for s in servers:
    r = rss[s]
    rows.append([s, durable[s]] + ["%.0f" % med(s, n) for n in sessions] +
                ["%.1f" % mib(r[k]) for k in ("idle", "after_first", "after_all", "before_big", "big_peak")] +
                ["%+.1f" % mib(r["big_peak"] - r["before_big"]), "%.1f" % mib(r["hwm"]), str(big_ms[s])])
widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
print("-" * (sum(widths) + 2 * (len(widths) - 1)))
for row in rows:
    print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
print()
print("msg/s: median of %d run(s) of %d messages; RSS columns in MiB (VmRSS of the server process);"
      % (len(rates[(servers[0], sessions[0])]), messages))
print("'after 1st run' = after its first %d-session run; big = one %d-byte message, sampled every"
      " %s ms (%s samples)." % (sessions[0], big_size, sample_ms,
                               "/".join(str(big_samples[s]) for s in servers)))
print("fsync floor (in-process write %d B + fsync + rename + dir fsync): median %.3f ms"
      " = at most %.0f msg/s on one session" % (floor["bytes"], floor["median_ms"], 1000 / floor["median_ms"]))

verdicts = []
if "relaymail" in servers:
    r = rss["relaymail"]
    def check(label, ok, detail):
        verdicts.append({"target": label, "pass": bool(ok), "detail": detail})
        print("%-4s %s: %s" % ("PASS" if ok else "FAIL", label, detail))
    print("\ntargets (issue 4; MB = 10^6 bytes):")
    one = med("relaymail", 1)
    if one is not None:
        check(">= 500 msg/s on one session with fsync", one >= 500, "%.0f msg/s" % one)
    if "aiosmtpd" in servers:
        for n in sessions:
            a, b = med("relaymail", n), med("aiosmtpd", n)
            check(f"faster than aiosmtpd with fsync, {n} session(s)", a > b, "%.0f vs %.0f msg/s (x%.2f)" % (a, b, a / b))
    if "smtp-sink" in servers:
        for n in sessions:
            a, b = med("relaymail", n), med("smtp-sink", n)
            check(f"within 2x of smtp-sink writing to disk, {n} session(s)", a * 2 >= b,
                  "%.0f vs %.0f msg/s (smtp-sink/relaymail = %.2f)" % (a, b, b / a))
    check("RSS <= 15 MB idle", mb(r["idle"]) <= 15, "%.1f MB" % mb(r["idle"]))
    check("RSS <= 25 MB after 1,000 messages", mb(r["after_first"]) <= 25,
          "%.1f MB after the first run, %.1f MB after all runs" % (mb(r["after_first"]), mb(r["after_all"])))
    growth = r["big_peak"] - r["before_big"]
    check("RSS flat while streaming the big message (growth <= 10% of its size)",
          growth * 1024 <= big_size / 10,
          "%+.1f MB (peak %.1f MB, before %.1f MB, message %.1f MB)"
          % (mb(growth), mb(r["big_peak"]), mb(r["before_big"]), big_size / 1e6))

json.dump({"msg_per_s": {f"{s}/{n}": {"median": med(s, n), "runs": rates[(s, n)]} for s in servers for n in sessions},
           "rss_kib": rss, "big_ms": big_ms, "big_rss_samples": big_samples, "big_bytes": big_size, "floor": floor,
           "durable": durable, "targets": verdicts},
          open(f"{out}/sink-summary.json", "w"), indent=1)
PY
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
main() {
    require_root "apt-get, and smtp-sink insists on -u when started by root"
    ensure_tools
    # smtp-sink drops to `nobody` and must reach its dump dir inside the temp dir.
    make_tmp sink-bench
    mkdir -p "$BENCH_OUT"
    rm -f "$BENCH_OUT"/sink-*
    : >"$T/versions.txt"
    : >"$BENCH_OUT/sink-runs.tsv"
    : >"$BENCH_OUT/sink-rss.tsv"
    : >"$BENCH_OUT/sink-big-ms.tsv"
    setup_postfix_tools
    make_big_message
    write_sampler

    if [[ $BENCH_ONLY != peers ]]; then
        if setup_relaymail; then SERVERS+=(relaymail); fi
    else
        log "SKIPPING relaymail (BENCH_ONLY=peers)"
    fi
    if [[ $BENCH_ONLY != relaymail ]]; then
        local peer
        for peer in $BENCH_PEERS; do
            case $peer in smtp-sink|aiosmtpd) ;; *) die "unknown peer: $peer (smtp-sink, aiosmtpd)" ;; esac
            server_fn setup "$peer"
            SERVERS+=("$peer")
        done
    fi
    ((${#SERVERS[@]})) || die "nothing to measure"

    measure_floor

    # Start every server, then take its idle RSS after a short settle.
    local s n rep i
    pick_ports
    for s in "${SERVERS[@]}"; do
        server_fn start "$s"
        log "$s: pid ${SPID[$s]}, listening on 127.0.0.1:${PORT[$s]}"
        if [[ -n $(pgrep -P "${SPID[$s]}" || true) ]]; then
            log "WARNING: $s has child processes; only the main process's RSS is measured"
        fi
    done
    sleep 1
    for s in "${SERVERS[@]}"; do note_rss "$s" idle "$(rss_kb "${SPID[$s]}")"; done

    # Throughput: interleaved, so that disk noise hits every server alike; the
    # starting server rotates from one repetition to the next.
    local order=()
    for ((rep = 1; rep <= REPEAT; rep++)); do
        order=()
        for ((i = 0; i < ${#SERVERS[@]}; i++)); do
            order+=("${SERVERS[$(((i + rep - 1) % ${#SERVERS[@]}))]}")
        done
        for n in $SESSIONS; do
            for s in "${order[@]}"; do
                run_load "$s" "$n" "$rep"
                if ((rep == 1)) && [[ $n == "${SESSIONS%% *}" ]]; then
                    note_rss "$s" after_first "$(rss_kb "${SPID[$s]}")"
                fi
            done
        done
    done
    for s in "${SERVERS[@]}"; do note_rss "$s" after_all "$(rss_kb "${SPID[$s]}")"; done

    for s in "${SERVERS[@]}"; do run_big "$s"; done
    report
    log "raw results in $BENCH_OUT (sink-*)"
}

main "$@"
