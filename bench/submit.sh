#!/usr/bin/env bash
# bench/submit.sh — queue-only submission benchmark: relaymail vs. dma, nullmailer, Postfix.
#
# Every program is timed as a whole process through its `sendmail` face, queueing
# one message and exiting, with no delivery daemon running and no network:
#   1. a 2 KB text message: median wall time over many runs (hyperfine);
#   2. a 50 MB message: wall time and peak RSS (/usr/bin/time -v), median of a few runs;
#   3. the disk "floor": write 2 KB + fsync + rename + directory fsync, measured
#      in-process (python3), plus the cost of spawning a trivial process (/bin/true).
#
# The peers are Debian 12 packages fetched with `apt-get download` and unpacked
# with `dpkg -x` into a throw-away root under a temp dir: nothing is installed
# system-wide and nothing under /etc is written. dma and nullmailer have spool paths
# compiled in (/var/spool/dma, /var/spool/nullmailer, and nullmailer's helpers in
# /usr/sbin and /usr/bin); they run in a private mount namespace (unshare) where
# those paths show our temp copies. Without namespace support the script falls back
# to symlinks at those fixed paths, only where nothing exists yet, removed at exit.
#
# Usage (as root, Debian 12):  bash bench/submit.sh
# Environment knobs (defaults in brackets):
#   BENCH_OUT        results dir for raw JSON/text [bench/results]
#   BENCH_ONLY       all | peers | relaymail   [all]
#   RELAYMAIL_BIN    relaymail binary [target/release/relaymail, built if missing]
#   BENCH_NO_BUILD   1 = skip relaymail (with a message) instead of building it
#   BENCH_PEERS      peers to measure ["dma nullmailer postfix"]
#   BENCH_RUNS / BENCH_WARMUP   2 KB runs / warm-up runs [300 / 20]
#   BENCH_BIG_RUNS   50 MB runs per program [5]
#   BENCH_BIG_MB     size of the big message in MiB [50]
#   BENCH_FLOOR_OPS  operations for the fsync floor [300]
#   BENCH_TMPDIR     where the temp dir (spools, messages) goes [$TMPDIR or /tmp];
#                    it must be on the disk you want to measure, not a tmpfs.
#   BENCH_NO_NS      1 = do not use mount namespaces (use the fixed-path fallback)
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
BENCH_PEERS=${BENCH_PEERS:-dma nullmailer postfix}
RUNS_SMALL=${BENCH_RUNS:-300}
WARMUP_SMALL=${BENCH_WARMUP:-20}
RUNS_BIG=${BENCH_BIG_RUNS:-5}
BIG_MB=${BENCH_BIG_MB:-50}
FLOOR_OPS=${BENCH_FLOOR_OPS:-300}

SENDER=bench@example.com
RCPT=rcpt@example.com

case $BENCH_ONLY in all|peers|relaymail) ;; *) echo "BENCH_ONLY must be all, peers or relaymail" >&2; exit 2 ;; esac

# Per-program state, filled by the setup_* functions:
#   ENVS[p]   environment assignments for that command ("" or "VAR=value ...")
#   CMD[p]    command that submits stdin as one message (queue only)
#   QUEUE[p]  directory where the queued files appear (checked and emptied)
#   WRAP[p]   "ns-spool", "ns-nullmailer" or "" : how to run it (see run_for)
declare -A ENVS CMD QUEUE WRAP
PROGRAMS=()        # programs that will be measured, in table order
USE_NS=0           # 1 when private mount namespaces are available
FIXED_PATHS=()     # fallback mode: symlinks we created at fixed paths (removed at exit)
T=""               # the temp dir


# --------------------------------------------------------------------------
# Temp dir and cleanup
# --------------------------------------------------------------------------
cleanup() {
    local p
    for p in "${FIXED_PATHS[@]}"; do
        rm -f -- "$p"
    done
    if [[ -n $T && -d $T ]]; then
        rm -rf -- "$T"
    fi
}


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

# Install what is missing (hyperfine, GNU time, python3, unshare) and refresh the
# package lists, which `apt-get download` needs anyway.
ensure_tools() {
    log "apt-get update"
    apt-get update -qq >/dev/null
    local need=()
    command -v hyperfine >/dev/null || need+=(hyperfine)
    [[ -x /usr/bin/time ]] || need+=(time)
    command -v python3 >/dev/null || need+=(python3)
    command -v unshare >/dev/null || need+=(util-linux)
    apt_install "${need[@]}"
    PYTHON=$(command -v /usr/bin/python3 || command -v python3)
}

# Can we make a private mount namespace? (Needs CAP_SYS_ADMIN; root on a normal host.)
detect_namespace() {
    if [[ ${BENCH_NO_NS:-0} != 1 ]] && unshare --mount --propagation private true 2>/dev/null; then
        USE_NS=1
        log "private mount namespaces: available (fixed peer paths stay untouched)"
    else
        USE_NS=0
        log "private mount namespaces: NOT available, falling back to symlinks at fixed paths"
    fi
}

# --------------------------------------------------------------------------
# Messages (generated once per run)
# --------------------------------------------------------------------------
TOKEN="rmbench-$$-$RANDOM"   # unique marker in the Subject, to find the queued copies

# A realistic 2 KB plain-text message: RFC 5322 headers plus wrapped prose, exactly 2048 bytes.
make_small_message() {
    MSG_SMALL=$T/msg-2k.eml
    "$PYTHON" - "$MSG_SMALL" "$TOKEN" "$SENDER" "$RCPT" <<'PY'
import sys, textwrap, email.utils
path, token, sender, rcpt = sys.argv[1:5]
headers = (
    f"From: Bench Sender <{sender}>\n"
    f"To: Bench Recipient <{rcpt}>\n"
    f"Subject: Weekly status report {token}\n"
    f"Date: {email.utils.formatdate(localtime=True)}\n"
    f"Message-ID: <{token}@example.com>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 7bit\n"
    "\n"
)
sentences = [
    "The nightly backups completed on all hosts and the restore test passed.",
    "Disk usage on the build machines is stable at about sixty percent.",
    "Two certificates expire next month and renewals have been scheduled.",
    "The mail relay queued every cron report without a single deferral.",
    "Please review the attached checklist before the maintenance window.",
    "No action is needed from you unless something below looks wrong.",
]
paras, i = [], 0
while sum(len(p) for p in paras) < 4000:
    paras.append(textwrap.fill(" ".join(sentences[(i + k) % 6] for k in range(4)), 72))
    i += 1
body = "Hello team,\n\n" + "\n\n".join(paras)
# Cut to exactly 2048 bytes, ending with a newline (the body is ASCII).
data = (headers + body).encode()[:2047] + b"\n"
open(path, "wb").write(data)
PY
    log "2 KB message: $(stat -c %s "$MSG_SMALL") bytes"
}

# A ~50 MiB MIME message: a short text part plus a base64 attachment in 76-char lines.
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

# --------------------------------------------------------------------------
# Peers: download, unpack, configure
# --------------------------------------------------------------------------


# Fallback only (no namespaces): make fixed path DEST point at SRC, refusing to
# touch anything that already exists there (a real MTA's spool or binary).
claim_fixed_path() {
    local src=$1 dest=$2
    [[ -e $dest || -L $dest ]] && die "$dest already exists (a real install?); refusing to touch it"
    mkdir -p "$(dirname "$dest")"
    ln -s "$src" "$dest"
    FIXED_PATHS+=("$dest")
}

# The shared stand-in for /var/spool used by dma and nullmailer.
VARSPOOL=""
make_varspool() {
    VARSPOOL=$T/varspool
    mkdir -p "$VARSPOOL/.empty-etc"
}

# Write the helper that runs a command in a private mount namespace where the fixed
# paths show our copies. Mode "spool": /var/spool -> $VARSPOOL. Mode "nullmailer":
# also nullmailer's binaries layered (read-only overlay) over /usr/sbin and /usr/bin.
write_ns_helper() {
    cat >"$T/in-ns.sh" <<'SH'
#!/usr/bin/env bash
# in-ns.sh MODE VARSPOOL NMROOT CMD...  (run under `unshare --mount --propagation private`)
set -euo pipefail
mode=$1 varspool=$2 nmroot=$3
shift 3
mount --bind "$varspool" /var/spool
# Should the host have a dma or nullmailer config, hide it: the peers run on defaults.
for etc in /etc/dma /etc/nullmailer; do
    if [[ -d $etc ]]; then mount --bind "$varspool/.empty-etc" "$etc"; fi
done
if [[ $mode == nullmailer ]]; then
    mount -t overlay overlay -o "lowerdir=$nmroot/usr/sbin:/usr/sbin" /usr/sbin
    mount -t overlay overlay -o "lowerdir=$nmroot/usr/bin:/usr/bin" /usr/bin
fi
exec "$@"
SH
    chmod 755 "$T/in-ns.sh"
}

# run_for PROGRAM CMD...: run CMD (e.g. hyperfine) where PROGRAM finds its paths.
run_for() {
    local p=$1
    shift
    if [[ $USE_NS == 1 && -n ${WRAP[$p]} ]]; then
        unshare --mount --propagation private -- \
            "$T/in-ns.sh" "${WRAP[$p]#ns-}" "$VARSPOOL" "$T/root-nullmailer" "$@"
    else
        "$@"
    fi
}

# dma: spool fixed at /var/spool/dma (SPOOLDIR lives in /etc/dma/dma.conf, which
# we do not write; with no config file dma uses its defaults). `-bq` = queue the
# mail, do not attempt delivery (dma otherwise forks a delivery process).
setup_dma() {
    fetch_deb dma
    local root=$T/root-dma
    mkdir -p "$VARSPOOL/dma"
    chown root:mail "$VARSPOOL/dma"
    chmod 2770 "$VARSPOOL/dma"
    if [[ $USE_NS == 0 ]]; then
        claim_fixed_path "$VARSPOOL/dma" /var/spool/dma
    fi
    ENVS[dma]=""
    CMD[dma]="$root/usr/sbin/sendmail -bq -odq -i -f $SENDER $RCPT"
    QUEUE[dma]=$VARSPOOL/dma
    WRAP[dma]=ns-spool
}

# nullmailer: sendmail execs /usr/bin/nullmailer-inject, which pipes into the
# setuid-mail /usr/sbin/nullmailer-queue, which writes /var/spool/nullmailer/queue.
# All paths are compiled in. It never delivers by itself: delivery is the job of
# the nullmailer-send daemon, which we do not run (the trigger FIFO is absent).
setup_nullmailer() {
    fetch_deb nullmailer
    local root=$T/root-nullmailer
    cp -a "$root/var/spool/nullmailer" "$VARSPOOL/nullmailer"
    if [[ $USE_NS == 0 ]]; then
        claim_fixed_path "$VARSPOOL/nullmailer" /var/spool/nullmailer
        claim_fixed_path "$root/usr/sbin/nullmailer-queue" /usr/sbin/nullmailer-queue
        claim_fixed_path "$root/usr/bin/nullmailer-inject" /usr/bin/nullmailer-inject
    fi
    ENVS[nullmailer]=""
    CMD[nullmailer]="$root/usr/sbin/sendmail -odq -i -f $SENDER $RCPT"
    QUEUE[nullmailer]=$VARSPOOL/nullmailer/queue
    WRAP[nullmailer]=ns-nullmailer
}

# Postfix: sendmail -C <confdir> reads our main.cf, whose queue_directory is private;
# sendmail hands the message to postdrop, which writes it into maildrop/. With no
# master/pickup daemon running it stays there: queue only. The binaries link to
# /usr/lib/postfix/*.so, so LD_LIBRARY_PATH points at our copy (and main.cf lets
# sendmail pass it on to postdrop). The default 10 MB message_size_limit would
# refuse the big message, so it is raised to 1 GiB. mail_owner, default_privs and
# setgid_group name accounts that exist on every Debian system (base-passwd), so
# no user or group is created.
setup_postfix() {
    fetch_deb postfix
    local root=$T/root-postfix pf=$T/postfix
    mkdir -p "$pf/conf" "$pf/queue/maildrop"
    cat >"$pf/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
command_directory = $root/usr/sbin
daemon_directory = $root/usr/lib/postfix/sbin
shlib_directory = $root/usr/lib/postfix
mail_owner = nobody
default_privs = daemon
setgid_group = mail
myhostname = bench.example.com
mydomain = example.com
message_size_limit = 1073741824
mailbox_size_limit = 1073741824
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$root/usr/lib/postfix
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH
EOF
    ENVS[postfix]="LD_LIBRARY_PATH=$root/usr/lib/postfix"
    CMD[postfix]="$root/usr/sbin/sendmail -C $pf/conf -odq -i -f $SENDER $RCPT"
    QUEUE[postfix]=$pf/queue/maildrop
    WRAP[postfix]=""
}

# relaymail: through its sendmail face (argv[0] = "sendmail") with a private spool.
# Returns 1 (and says why) when relaymail is to be skipped.
setup_relaymail() {
    build_relaymail || return 1
    local dir=$T/relaymail spool=$T/relaymail/spool
    mkdir -p "$dir/bin" "$spool"
    # sendmail is the small submitter beside relaymail, as installed (a
    # build without one: relaymail itself).
    local submitter
    submitter=$(dirname "$(realpath "$RELAYMAIL_BIN")")/relaymail-sendmail
    [[ -x $submitter ]] || submitter=$(realpath "$RELAYMAIL_BIN")
    ln -s "$submitter" "$dir/bin/sendmail"
    cat >"$dir/relaymail.toml" <<EOF
hostname = "bench.example.com"
spool_dir = "$spool"
[log]
syslog = false
EOF
    ENVS[relaymail]="RELAYMAIL_CONFIG=$dir/relaymail.toml"
    CMD[relaymail]="$dir/bin/sendmail -odq -i -f $SENDER $RCPT"
    QUEUE[relaymail]=$spool
    WRAP[relaymail]=""
    echo "relaymail $("$RELAYMAIL_BIN" --version 2>/dev/null | head -1 || echo unknown) ($BUILD_NOTE)" >>"$T/versions.txt"
}

# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------

# The full command line of program $1: environment assignments, then the command.
full_cmd() { echo "${ENVS[$1]:+${ENVS[$1]} }${CMD[$1]}"; }

# Remove queued files (keeping the directory layout the program expects).
empty_queue() {
    local p=$1 dir=${QUEUE[$1]}
    find "$dir" -type f -delete
    if [[ $p == nullmailer ]]; then
        find "$VARSPOOL/nullmailer/tmp" -type f -delete
    fi
}

# verify_queued PROGRAM MSGFILE: submit once (also serves as a warm-up) and fail
# loudly unless a queued file holding the whole message appeared in the queue.
verify_queued() {
    local p=$1 msg=$2 size biggest count
    empty_queue "$p"
    if ! run_for "$p" sh -c "$(full_cmd "$p") < $msg" >"$T/verify-$p.log" 2>&1; then
        cat "$T/verify-$p.log" >&2
        die "$p: submission failed"
    fi
    count=$(find "${QUEUE[$p]}" -type f | wc -l)
    size=$(stat -c %s "$msg")
    biggest=$(find "${QUEUE[$p]}" -type f -printf '%s\n' | sort -n | tail -1)
    if ((count == 0)); then
        die "$p: exit 0 but nothing appeared in ${QUEUE[$p]}"
    fi
    # The stored copy must be at least (about) the message's size...
    if ((biggest * 100 < size * 95)); then
        die "$p: largest queued file is $biggest bytes, message is $size bytes"
    fi
    # ...and carry this run's marker from the Subject.
    if ! grep -rqF "$TOKEN" "${QUEUE[$p]}"; then
        die "$p: queued files do not contain the message (marker $TOKEN not found)"
    fi
    if [[ $p == relaymail ]]; then
        # One queue file per message, carrying its first envelope
        # (docs/spool.md): the committed entry is queue/<ID>.msg.
        local msg
        msg=$(find "${QUEUE[$p]}/queue" -name '*.msg' 2>/dev/null | head -1)
        [[ -n $msg ]] && head -c 23 "$msg" | grep -qx 'relaymail-queue-file 2 ' ||
            die "relaymail: expected a queue file <ID>.msg in ${QUEUE[$p]}/queue"
    fi
    log "$p: verified, $count file(s) queued, largest $biggest bytes"
    empty_queue "$p"
}

# 2 KB: hyperfine, many runs; the queue grows by ~2.5 KB a run, emptied per program.
measure_small() {
    local p=$1
    verify_queued "$p" "$MSG_SMALL"
    run_for "$p" hyperfine --style basic --warmup "$WARMUP_SMALL" --runs "$RUNS_SMALL" \
        --export-json "$BENCH_OUT/small-$p.json" --command-name "$p" \
        "$(full_cmd "$p") < $MSG_SMALL" >"$BENCH_OUT/small-$p.txt" 2>&1 ||
        { cat "$BENCH_OUT/small-$p.txt" >&2; die "$p: 2 KB benchmark failed"; }
    empty_queue "$p"
    log "$p: 2 KB median $(json_median_ms "$BENCH_OUT/small-$p.json") ms"
}

# 50 MB: hyperfine for the wall time, each run wrapped in /usr/bin/time -v, which
# appends the peak RSS to a text file; the queue is emptied before every run.
# (The environment assignments go before /usr/bin/time, which cannot exec them.)
measure_big() {
    local p=$1
    verify_queued "$p" "$MSG_BIG"
    rm -f "$BENCH_OUT/big-$p.time.txt"
    run_for "$p" hyperfine --style basic --runs "$RUNS_BIG" \
        --prepare "find ${QUEUE[$p]} -type f -delete" \
        --export-json "$BENCH_OUT/big-$p.json" --command-name "$p" \
        "${ENVS[$p]:+${ENVS[$p]} }/usr/bin/time -v -a -o $BENCH_OUT/big-$p.time.txt ${CMD[$p]} < $MSG_BIG" \
        >"$BENCH_OUT/big-$p.txt" 2>&1 ||
        { cat "$BENCH_OUT/big-$p.txt" >&2; die "$p: 50 MB benchmark failed"; }
    empty_queue "$p"
    log "$p: big median $(json_median_ms "$BENCH_OUT/big-$p.json") ms"
}

json_median_ms() {
    "$PYTHON" -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}

# The disk floor: in one python3 process, per operation: create a file, write
# 2 KB, fsync it, rename it into a queue directory, fsync that directory. No
# process start-up is included; this is the least a durable spool can cost.
measure_floor() {
    mkdir -p "$T/floor/tmp" "$T/floor/queue"
    "$PYTHON" - "$T/floor" "$FLOOR_OPS" "$BENCH_OUT/floor.json" <<'PY'
import json, os, statistics, sys, time
root, ops, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = (b"x" * 75 + b"\n") * 26 + b"x" * 71 + b"\n"   # 2048 bytes
assert len(data) == 2048
qdir = os.open(os.path.join(root, "queue"), os.O_RDONLY | os.O_DIRECTORY)
times = []
for i in range(ops + 20):                 # the first 20 are warm-up
    tmp = os.path.join(root, "tmp", f"{i}.tmp")
    final = os.path.join(root, "queue", f"{i}.msg")
    t0 = time.perf_counter_ns()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, final)
    os.fsync(qdir)
    t1 = time.perf_counter_ns()
    if i >= 20:
        times.append((t1 - t0) / 1e6)
times.sort()
res = {"ops": ops, "median_ms": statistics.median(times),
       "p10_ms": times[len(times) // 10], "p90_ms": times[len(times) * 9 // 10],
       "min_ms": times[0], "max_ms": times[-1]}
json.dump(res, open(out, "w"), indent=1)
PY
    log "fsync floor: median $("$PYTHON" -c 'import json,sys;print("%.3f"%json.load(open(sys.argv[1]))["median_ms"])' "$BENCH_OUT/floor.json") ms/op"
    # Process floor: what spawning a trivial program costs, measured like the others.
    hyperfine --style basic --warmup "$WARMUP_SMALL" --runs "$RUNS_SMALL" \
        --export-json "$BENCH_OUT/spawn.json" --command-name "/bin/true" /bin/true \
        >"$BENCH_OUT/spawn.txt" 2>&1
    log "spawn floor: /bin/true median $(json_median_ms "$BENCH_OUT/spawn.json") ms"
}

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
report() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "kernel: $(uname -r)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
        echo "spool filesystem: $(fs_type "$T") ($(df -P "$T" | awk 'NR==2{print $1}'))"
        echo "mount namespaces: $([[ $USE_NS == 1 ]] && echo yes || echo 'no (fixed-path fallback)')"
        echo "hyperfine: $(hyperfine --version)"
        echo "2 KB: $RUNS_SMALL runs after $WARMUP_SMALL warm-up; big: $RUNS_BIG runs of $(stat -c %s "$MSG_BIG") bytes"
        sed 's/^/version: /' "$T/versions.txt"
        echo
        echo "commands:"
        local p
        for p in "${PROGRAMS[@]}"; do echo "  $p: $(full_cmd "$p") < MESSAGE"; done
        echo
    } >"$BENCH_OUT/environment.txt"

    "$PYTHON" - "$BENCH_OUT" "$BIG_MB" "${PROGRAMS[@]}" <<'PY' | tee "$BENCH_OUT/summary.txt"
import json, os, re, statistics, sys
out, big, progs = sys.argv[1], sys.argv[2] + "MB", sys.argv[3:]

def median_s(path):
    return json.load(open(path))["results"][0]["median"]

def rss_mib(path):
    vals = [int(m) for m in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())]
    return statistics.median(vals) / 1024

rows = {}
for p in progs:
    rows[p] = {"small_ms": median_s(f"{out}/small-{p}.json") * 1000,
               "big_s": median_s(f"{out}/big-{p}.json"),
               "rss_mib": rss_mib(f"{out}/big-{p}.time.txt")}
rm = rows.get("relaymail")

def ratio(key, p):
    return "n/a" if rm is None else "%.2f" % (rm[key] / rows[p][key])

hdr = ("program", "2KB median ms", big + " wall s", big + " RSS MiB",
       "rm/peer 2KB", "rm/peer " + big, "rm/peer RSS")
fmt = "{:<12} {:>13} {:>12} {:>13} {:>11} {:>13} {:>11}"
print(fmt.format(*hdr))
print("-" * 92)
for p in progs:
    r = rows[p]
    print(fmt.format(p, "%.3f" % r["small_ms"], "%.3f" % r["big_s"], "%.1f" % r["rss_mib"],
                     ratio("small_ms", p), ratio("big_s", p), ratio("rss_mib", p)))
floor = json.load(open(f"{out}/floor.json"))
spawn = median_s(f"{out}/spawn.json") * 1000
print()
print("floor: write 2 KB + fsync + rename + dir fsync, in-process: median %.3f ms/op (p10 %.3f, p90 %.3f)"
      % (floor["median_ms"], floor["p10_ms"], floor["p90_ms"]))
print("floor: spawn /bin/true (hyperfine): median %.3f ms" % spawn)
if rm is None:
    print("\nrelaymail was not measured: ratios are n/a.")
print("\nratios are relaymail / peer: below 1.00 means relaymail is faster (or smaller).")
json.dump({"programs": rows, "floor": floor, "spawn_true_ms": spawn},
          open(f"{out}/summary.json", "w"), indent=1)
PY
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
main() {
    require_root "peers need setuid/setgid spools, mounts and apt-get"
    ensure_tools
    detect_namespace
    # nullmailer-queue is setuid `mail`: it must be able to traverse the temp dir.
    make_tmp bench
    mkdir -p "$BENCH_OUT"
    : >"$T/versions.txt"
    make_small_message
    make_big_message
    make_varspool
    write_ns_helper

    if [[ $BENCH_ONLY != peers ]]; then
        if setup_relaymail; then PROGRAMS+=(relaymail); fi
    else
        log "SKIPPING relaymail (BENCH_ONLY=peers)"
    fi
    if [[ $BENCH_ONLY != relaymail ]]; then
        local peer
        for peer in $BENCH_PEERS; do
            declare -F "setup_$peer" >/dev/null || die "unknown peer: $peer"
            "setup_$peer"
            PROGRAMS+=("$peer")
        done
    fi
    ((${#PROGRAMS[@]})) || die "nothing to measure"

    measure_floor
    local p
    for p in "${PROGRAMS[@]}"; do measure_small "$p"; done
    for p in "${PROGRAMS[@]}"; do measure_big "$p"; done
    report
    log "raw results in $BENCH_OUT"
}

main "$@"
