#!/usr/bin/env bash
# bench/deliver.sh — delivery benchmark: relaymail vs. msmtp, esmtp, dma, nullmailer, Postfix.
#
# Every program delivers to the same two loopback smarthosts, in one run:
#   plain      Postfix's smtp-sink (counts sessions and messages, dumps each message);
#   STARTTLS   `relaymail sink` with STARTTLS and AUTH (any credentials accepted).
# Both stores live on /dev/shm, so that the servers are not the bottleneck.
# Three measures:
#   1. end to end: BENCH_MESSAGES messages of 2 KB, each submitted by its own
#      `sendmail` process in a sequential loop, in the program's default delivery
#      mode; timed from the first submission to the last arrival at the server;
#   2. backlog: the same number of messages queued while the smarthost is down (with
#      the program's queue-only mode where it has one), then the server is started
#      and the program's queue run is timed until the last arrival; the SMTP
#      sessions used are counted by the server; smtp-source gives the ceiling;
#   3. one BENCH_BIG_MB MiB message: peak RSS of the delivering process.
# Arrivals are counted and timed on the server side (smtp-sink's -c counters and
# dump files, the sink's JSON event lines); every run checks that all messages
# arrived exactly once, and that the program's queue is empty afterwards.
# Servers and programs run in a private network namespace with only a loopback
# interface, so the kernel's count of accepted TCP connections there (Tcp
# PassiveOpens) is exactly the number of SMTP sessions the servers received.
#
# The peers are Debian 12 packages fetched with `apt-get download` and unpacked with
# `dpkg -x` into a temp dir (as in bench/submit.sh); none of them is installed.
# dma and nullmailer have their paths compiled in (/etc/dma, /var/spool/dma,
# /etc/nullmailer, /var/spool/nullmailer, /usr/lib/nullmailer, ...): they run in
# private mount namespaces (unshare) where those paths show temp copies. Postfix is
# the installed one, as a private instance (own config dir, queue and master) that
# relays to the benchmark's smarthost. Nothing under /etc or /var is written.
#
# Usage (as root, Debian 12):  bash bench/deliver.sh
# Environment knobs (defaults in brackets):
#   BENCH_OUT        results dir for raw output [bench/results]; files are named deliver-*
#   RELAYMAIL_BIN    relaymail binary [target/release/relaymail, built when missing or
#                    older than the sources]
#   BENCH_NO_BUILD   1 = never build; use RELAYMAIL_BIN as it is
#   BENCH_PEERS      peers to measure ["msmtp esmtp dma nullmailer postfix"]
#   BENCH_CASES      measures to run ["e2e backlog big ceiling"]
#   BENCH_BACKLOG_TLS  programs whose backlog is also run over STARTTLS+AUTH
#                    ["relaymail dma postfix"; "all" for every program]
#   BENCH_MESSAGES   messages per end-to-end and backlog run [1000]
#   BENCH_BIG_MB     size of the big message in MiB [50]
#   BENCH_TIMEOUT    limit for one submission loop or one queue run, seconds [180]
#   BENCH_WAIT       how long to wait for the last arrivals once the loop or the
#                    queue run is over, seconds [60]
#   BENCH_TMPDIR     where the temp dir (the programs' queues) goes [$TMPDIR or /tmp];
#                    it should be the disk you want to measure, not a tmpfs.
set -euo pipefail

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
BENCH_OUT=${BENCH_OUT:-$REPO_ROOT/bench/results}
RELAYMAIL_BIN=${RELAYMAIL_BIN:-$REPO_ROOT/target/release/relaymail}
BENCH_NO_BUILD=${BENCH_NO_BUILD:-0}
BENCH_PEERS=${BENCH_PEERS-msmtp esmtp dma nullmailer postfix}
BENCH_CASES=${BENCH_CASES:-e2e backlog big ceiling}
BENCH_BACKLOG_TLS=${BENCH_BACKLOG_TLS:-relaymail dma postfix}
N=${BENCH_MESSAGES:-1000}
BIG_MB=${BENCH_BIG_MB:-50}
TIMEOUT=${BENCH_TIMEOUT:-180}
WAIT=${BENCH_WAIT:-60}

SENDER=bench@example.com
RCPT=rcpt@example.com
AUTH_USER=bench
AUTH_PASS=bench-secret
TOKEN="rmdlv$$x$RANDOM"   # marker in every Subject of this run

PYTHON=/usr/bin/python3
T=""               # temp dir on disk: the programs' queues, configs, messages
S=""               # temp dir on /dev/shm: the servers' stores
USE_NS=0           # 1 when private mount namespaces are available
NETNS_PID=""       # holder process of the private network namespace
NETNS=""           # prefix that runs a command in that namespace ("" without one)
PROC_NET=/proc/self/net   # that namespace's /proc/net (TCP sockets, counters)
PROGRAMS=()        # relaymail first, then the peers, in table order
SKIPPED=()         # "program: reason" for peers that cannot run at all
BUILD_NOTE=""      # how the relaymail binary was obtained

# The running server (at most one at a time) and the program's daemons.
SRV_PID="" SRV_KIND="" SRV_FEED="" SRV_STORE="" SRV_PORT="" SRV_DIR=""
PO_BASE=0 RUN_N=0 RUN_MINSIZE=0 RSS_KIB="" NM_PID="" BIG="" LOAD_START=""
DAEMON_PIDS=()     # nullmailer-send and similar, by pid
PF_DIRS=()         # private Postfix instances started (stopped at exit)

# Per-program settings for the current run, set by <program>_config:
#   SUBMIT    command that takes one message on stdin, default delivery mode
#   SUBMIT_Q  the same, queue only (for the backlog and the big message)
#   FLUSH     the queue run; FLUSH_BIG the one timed with /usr/bin/time -v
#   NSPFX     prefix that runs a command where the program finds its fixed paths
#   XENV      environment assignments for every command of the program
SUBMIT="" SUBMIT_Q="" FLUSH="" FLUSH_BIG="" NSPFX="" XENV=""

py() { PROC_NET=$PROC_NET "$PYTHON" "$T/bench.py" "$@"; }
has_case() { [[ " $BENCH_CASES " == *" $1 "* ]]; }

# --------------------------------------------------------------------------
# Temp dirs and cleanup
# --------------------------------------------------------------------------

# kill_pid PID: TERM, then KILL after 3 s; never waits longer.
kill_pid() {
    local pid=$1 _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Processes started from the temp dir (delivery children that detached, such as
# dma's and relaymail's background deliveries), except the running server.
kill_strays() {
    [[ -n $T ]] || return 0
    local p exe n=0
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ $exe == "$T"/* ]] || continue
        [[ ${p#/proc/} == "$SRV_PID" || ${p#/proc/} == "$$" ]] && continue
        kill -TERM "${p#/proc/}" 2>/dev/null && n=$((n + 1))
    done
    echo "$n"
}

stop_postfix() {
    local d=$1 pid
    [[ -f $d/queue/pid/master.pid ]] || return 0
    pid=$(tr -dc '0-9' <"$d/queue/pid/master.pid")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    timeout 30 postfix -c "$d/etc" stop >/dev/null 2>&1 || true
    kill_pid "$pid"
}

cleanup() {
    local pid d
    set +e
    for pid in "${DAEMON_PIDS[@]}"; do kill_pid "$pid"; done
    for d in "${PF_DIRS[@]}"; do stop_postfix "$d"; done
    [[ -n $SRV_PID ]] && kill_pid "$SRV_PID"
    kill_strays >/dev/null
    [[ -n $NETNS_PID ]] && kill_pid "$NETNS_PID"
    sleep 0.2
    [[ -n $S && -d $S ]] && rm -rf -- "$S"
    [[ -n $T && -d $T ]] && rm -rf -- "$T"
}

setup_tmp() {
    # nullmailer (mail), Postfix (postfix) and smtp-sink (nobody) must traverse it.
    make_tmp deliver
    if [[ -d /dev/shm && -w /dev/shm ]]; then
        S=$(mktemp -d /dev/shm/relaymail-deliver.XXXXXX)
    else
        S=$(mktemp -d "$T/shm.XXXXXX")
        log "WARNING: no /dev/shm: the servers store on $(fs_type "$S")"
    fi
    chmod 755 "$S"
    mkdir -p "$T/w"
}

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

# Install what is missing: GNU time, python3, util-linux (unshare, setpriv) and
# libsasl2-modules (PLAIN/LOGIN for Postfix's SASL client). Never an MTA: Postfix
# must already be installed (the test suite uses it, and it provides smtp-sink).
ensure_tools() {
    local need=()
    [[ -x /usr/bin/time ]] || need+=(time)
    [[ -x $PYTHON ]] || need+=(python3)
    command -v unshare >/dev/null && command -v setpriv >/dev/null && command -v nsenter >/dev/null ||
        need+=(util-linux)
    command -v ip >/dev/null || need+=(iproute2)
    dpkg -s libsasl2-modules >/dev/null 2>&1 || need+=(libsasl2-modules)
    if ((${#need[@]})); then
        log "apt-get update; installing: ${need[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    { dpkg -s postfix >/dev/null 2>&1 && [[ -x /usr/sbin/smtp-sink && -x /usr/sbin/smtp-source ]]; } ||
        die "Postfix must be installed (it provides smtp-sink, smtp-source and the postfix peer); this script never installs an MTA"
    [[ $(dpkg -S /usr/sbin/sendmail 2>/dev/null) == postfix:* ]] ||
        die "/usr/sbin/sendmail does not belong to the postfix package"
}

detect_namespace() {
    if unshare --mount --propagation private true 2>/dev/null; then
        USE_NS=1
    else
        USE_NS=0
        log "private mount namespaces are NOT available: dma and nullmailer will be skipped"
    fi
}

# A private network namespace with only `lo`, held by a sleeping process. Every
# server and every program runs in it (through nsenter), so that nothing else on
# the machine can connect to the servers, and Tcp PassiveOpens in it counts
# exactly the sessions they accepted. Without it, the servers' own counts are used.
setup_netns() {
    unshare --net sleep infinity &
    NETNS_PID=$!
    sleep 0.1
    if kill -0 "$NETNS_PID" 2>/dev/null &&
        nsenter --net="/proc/$NETNS_PID/ns/net" ip link set lo up 2>/dev/null; then
        NETNS="nsenter --net=/proc/$NETNS_PID/ns/net --"
        PROC_NET=/proc/$NETNS_PID/net
        log "private network namespace: yes (sessions = accepted TCP connections there)"
    else
        kill_pid "$NETNS_PID"
        NETNS_PID="" NETNS="" PROC_NET=/proc/self/net
        log "WARNING: no private network namespace: sessions are counted by the servers (see the README)"
    fi
}


# --------------------------------------------------------------------------
# Generated helpers: bench.py (messages, waiting, counting, report), in-ns.sh, loop.sh
# --------------------------------------------------------------------------
write_helpers() {
    cat >"$T/bench.py" <<'PY'
"""Helpers for bench/deliver.sh: messages, waits, server-side counts, the report."""
import base64, datetime, email.utils, json, os, re, socket, sys, textwrap, time

SENTENCES = [
    "The nightly backups completed on all hosts and the restore test passed.",
    "Disk usage on the build machines is stable at about sixty percent.",
    "Two certificates expire next month and renewals have been scheduled.",
    "The mail relay queued every cron report without a single deferral.",
    "Please review the attached checklist before the maintenance window.",
    "No action is needed from you unless something below looks wrong.",
]

def subject(token, label, seq, n):
    return f"DLV {token} {label} {seq}/{n}"

def gen(d, n, token, label, sender, rcpt):
    """N messages of exactly 2048 bytes, each with its own Subject and Message-ID."""
    os.makedirs(d, exist_ok=True)
    n = int(n)
    paras, i = [], 0
    while sum(len(p) for p in paras) < 4000:
        paras.append(textwrap.fill(" ".join(SENTENCES[(i + k) % 6] for k in range(4)), 72))
        i += 1
    body = "Hello team,\n\n" + "\n\n".join(paras)
    date = email.utils.formatdate(localtime=True)
    for seq in range(1, n + 1):
        headers = (
            f"From: Bench Sender <{sender}>\n"
            f"To: Bench Recipient <{rcpt}>\n"
            f"Subject: {subject(token, label, seq, n)}\n"
            f"Date: {date}\n"
            f"Message-ID: <{token}.{label}.{seq}@example.com>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 7bit\n"
            "\n"
        )
        data = (headers + body).encode()[:2047] + b"\n"
        with open(os.path.join(d, "%06d.eml" % seq), "wb") as f:
            f.write(data)

def big(path, mb, token, sender, rcpt):
    """A ~MB MiB MIME message: a short text part and a base64 attachment (76-char lines)."""
    target = int(mb) * 1024 * 1024
    lines = (target - 1024) // 77
    head = (
        f"From: Bench Sender <{sender}>\n"
        f"To: Bench Recipient <{rcpt}>\n"
        f"Subject: {subject(token, 'big', 1, 1)}\n"
        f"Date: {email.utils.formatdate(localtime=True)}\n"
        f"Message-ID: <{token}.big@example.com>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="=_bench_boundary"\n\n'
        "--=_bench_boundary\nContent-Type: text/plain; charset=utf-8\n\n"
        "The archive for this quarter is attached.\n\n"
        '--=_bench_boundary\nContent-Type: application/octet-stream; name="archive.bin"\n'
        'Content-Disposition: attachment; filename="archive.bin"\n'
        "Content-Transfer-Encoding: base64\n\n"
    )
    with open(path, "wb") as f:
        f.write(head.encode())
        f.write(base64.encodebytes(os.urandom(lines * 57)))
        f.write(b"--=_bench_boundary--\n")

def freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()

PROC_NET = os.environ.get("PROC_NET", "/proc/self/net")

def passive_opens():
    """Tcp PassiveOpens of the namespace: TCP connections accepted so far."""
    lines = [l.split() for l in open(os.path.join(PROC_NET, "snmp")) if l.startswith("Tcp:")]
    print(int(lines[1][lines[0].index("PassiveOpens")]))

def tcp_states(port):
    """States (hex strings) of the TCP sockets whose local port is PORT."""
    port, out = int(port), []
    for name in (os.path.join(PROC_NET, "tcp"), os.path.join(PROC_NET, "tcp6")):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 3 and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.append(f[3])
    return out

def listening(port, timeout):
    end = time.time() + float(timeout)
    while time.time() < end:
        if "0A" in tcp_states(port):
            return 0
        time.sleep(0.02)
    return 1

def idle(port, timeout):
    """Wait until no established connection is left on the server's port."""
    end = time.time() + float(timeout)
    while True:
        n = tcp_states(port).count("01")
        if n == 0 or time.time() > end:
            print(n)
            return 0 if n == 0 else 1
        time.sleep(0.05)

def sink_counters(path):
    """The last 'sess=N quit=N mesg=N' of smtp-sink -c (stdout)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 400))
            tail = f.read()
    except OSError:
        return 0, 0
    m = re.findall(rb"sess=(\d+) quit=(\d+) mesg=(\d+)", tail)
    if not m:
        return 0, 0
    return int(m[-1][0]), int(m[-1][2])

class LineCounter:
    def __init__(self, path):
        self.path, self.pos, self.n = path, 0, 0
    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.n
        self.pos += len(data)
        self.n += data.count(b"\n")
        return self.n

def wait(kind, path, target, timeout, flag, grace):
    """Poll the server's count until TARGET; after FLAG appears, give it GRACE more s."""
    target, start = int(target), time.time()
    end, graced = start + float(timeout), False
    lc = LineCounter(path)
    while True:
        c = sink_counters(path)[1] if kind == "plain" else lc.count()
        now = time.time()
        if c >= target:
            print(json.dumps({"reached": True, "count": c, "seen": now}))
            return 0
        if not graced and os.path.exists(flag):
            graced, end = True, min(end, now + float(grace))
        if now > end:
            print(json.dumps({"reached": False, "count": c, "seen": now}))
            return 1
        time.sleep(0.02)

def parse_time(s):
    """RFC 3339 with up to 9 fractional digits -> epoch seconds (float)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = m.group(3)
    off = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.replace(tzinfo=datetime.timezone.utc).timestamp() - off + frac

def inspect(kind, store, token, label):
    """What this run delivered: total and distinct messages of LABEL, the last
    arrival (server's time), sessions (sink: distinct client address:port) and the
    largest stored size."""
    pat = re.compile(r"^Subject: DLV %s %s (\d+)/" % (re.escape(token), re.escape(label)), re.M)
    seqs, total, last, first, maxsize, clients = set(), 0, None, None, 0, set()
    if kind == "plain":
        for name in os.listdir(store):
            p = os.path.join(store, name)
            st = os.stat(p)
            with open(p, "rb") as f:
                head = f.read(16384).decode("latin-1")
            m = pat.search(head)
            if not m:
                continue
            total += 1
            seqs.add(int(m.group(1)))
            t = st.st_mtime_ns / 1e9
            last = t if last is None else max(last, t)
            first = t if first is None else min(first, t)
            maxsize = max(maxsize, st.st_size)
        sessions = None
    else:
        spat = re.compile(r"^DLV %s %s (\d+)/" % (re.escape(token), re.escape(label)))
        try:
            lines = open(store).read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            m = spat.match(ev.get("subject") or "")
            if not m:
                continue
            total += 1
            seqs.add(int(m.group(1)))
            clients.add(ev.get("client"))
            t = parse_time(ev["time"])
            last = t if last is None else max(last, t)
            first = t if first is None else min(first, t)
            maxsize = max(maxsize, int(ev.get("size") or 0))
        sessions = len(clients)
    print(json.dumps({"total": total, "distinct": len(seqs), "last": last, "first": first,
                      "sessions": sessions, "max_size": maxsize}))

def children_hwm(ppid):
    """VmHWM of every child of PPID: [(pid, comm, kB)], largest first."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            pp = int(stat.rsplit(")", 1)[1].split()[1])
            if pp != int(ppid):
                continue
            comm = open(f"/proc/{d}/comm").read().strip()
            hwm = re.search(r"VmHWM:\s+(\d+) kB", open(f"/proc/{d}/status").read())
            out.append((int(d), comm, int(hwm.group(1)) if hwm else 0))
        except (OSError, IndexError, ValueError):
            continue
    out.sort(key=lambda x: -x[2])
    print(json.dumps(out))

def time_rss(path):
    m = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())
    print(m[-1] if m else "")

def fingerprint(pem, sep):
    import hashlib, ssl
    der = ssl.PEM_cert_to_DER_cert(open(pem).read())
    h = hashlib.sha256(der).hexdigest().upper()
    print(sep.join(h[i:i + 2] for i in range(0, len(h), 2)))

def record(path, *kv):
    row = {}
    for item in kv:
        k, v = item.split("=", 1)
        if v == "":
            row[k] = None
            continue
        for conv in (int, float):
            try:
                row[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            row[k] = v
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")

# ---------------------------------------------------------------- report
def report(results, n, big_bytes, out_json, sess_method):
    n, big_bytes = int(n), int(big_bytes)
    rows = [json.loads(l) for l in open(results) if l.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["case"], []).append(r)

    def ratio(v, ref):
        """relaymail's figure divided by the program's."""
        if not v or not ref:
            return "-"
        q = ref / v
        return "%.2f" % q if q < 100 else "%.0f" % q

    def rm_of(case, key):
        for r in by.get(case, []):
            if r["program"] == "relaymail" and r["status"] == "ok":
                return r.get(key)
        return None

    titles = {
        "e2e-plain": "1a. End to end, plain smarthost (smtp-sink): %d messages, one sendmail process each, default delivery mode" % n,
        "e2e-tls": "1b. End to end, STARTTLS+AUTH smarthost (relaymail sink): %d messages, one sendmail process each, default delivery mode" % n,
        "backlog-plain": "2a. Backlog of %d queued messages, queue run, plain smarthost (smtp-sink)" % n,
        "backlog-tls": "2b. Backlog of %d queued messages, queue run, STARTTLS+AUTH smarthost (relaymail sink)" % n,
        "big": "3. One %.1f MiB message (%d bytes), queue run, plain smarthost: peak RSS of the delivering process" % (big_bytes / 1048576, big_bytes),
    }
    for case in ("e2e-plain", "e2e-tls", "backlog-plain", "backlog-tls", "ceiling", "big"):
        if case not in by:
            continue
        print()
        if case == "ceiling":
            print("2c. Ceiling: Postfix smtp-source -> smtp-sink, %d messages of ~2 KB, no queue" % n)
            fmt = "{:<26} {:>8} {:>9} {:>8}  {}"
            print(fmt.format("client", "msg/s", "sessions", "total s", "status"))
            print("-" * 78)
            for r in by[case]:
                print(fmt.format(r["program"], "%.1f" % r["msg_s"] if r.get("msg_s") else "-",
                                 r["sessions"] if r.get("sessions") is not None else "-",
                                 "%.2f" % r["elapsed"] if r.get("elapsed") else "-", r["status"]))
            continue
        print(titles[case])
        if case == "big":
            ref = rm_of(case, "rss_kib")
            fmt = "{:<11} {:>12} {:>9} {:>9} {:>9}  {:<8} {}"
            print(fmt.format("program", "peak RSS MiB", "rm/prog", "total s", "sessions", "status", "measured on"))
            print("-" * 100)
            for r in by[case]:
                ok = r["status"] == "ok"
                rss = r.get("rss_kib")
                print(fmt.format(r["program"], "%.1f" % (rss / 1024) if rss else "-",
                                 ratio(rss, ref) if ok else "-",
                                 "%.2f" % r["elapsed"] if r.get("elapsed") else "-",
                                 r["sessions"] if r.get("sessions") is not None else "-",
                                 r["status"], r.get("rss_proc") or "-"))
            continue
        ref = rm_of(case, "msg_s")
        second = "submit s" if case.startswith("e2e") else "queue s"
        fmt = "{:<11} {:>8} {:>9} {:>9} {:>8} {:>9}  {}"
        print(fmt.format("program", "msg/s", "rm/prog", "sessions", "total s", second, "status"))
        print("-" * 100)
        for r in by[case]:
            ok = r["status"] == "ok"
            other = r.get("submit_s") if case.startswith("e2e") else r.get("queue_s")
            print(fmt.format(r["program"], "%.1f" % r["msg_s"] if ok and r.get("msg_s") else "-",
                             ratio(r.get("msg_s"), ref) if ok else "-",
                             r["sessions"] if r.get("sessions") is not None else "-",
                             "%.2f" % r["elapsed"] if ok and r.get("elapsed") else "-",
                             "%.2f" % other if other else "-", r["status"]))
    print()
    print("rm/prog = relaymail's figure / the program's: for msg/s above 1.00 means relaymail is faster,")
    print("for RSS below 1.00 means relaymail uses less memory. total s = first submission (1) or start")
    print("of the queue run (2, 3) -> last arrival, on the server's clock. sessions = TCP connections the")
    print("server accepted during the run (%s)." % sess_method)
    notes = [r for r in rows if r.get("note")]
    if notes:
        print()
        for r in notes:
            print("note: %s %s: %s" % (r["case"], r["program"], r["note"]))
    json.dump(rows, open(out_json, "w"), indent=1)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"gen": gen, "big": big, "freeport": freeport, "listening": listening, "idle": idle,
          "wait": wait, "inspect": inspect, "children_hwm": children_hwm, "time_rss": time_rss,
          "fingerprint": fingerprint, "record": record, "report": report,
          "passive_opens": passive_opens, "sess": lambda p: print(sink_counters(p)[0])}[cmd]
    rc = fn(*args)
    sys.exit(rc or 0)
PY

    # in-ns.sh VARSPOOL ETCTOP NMROOT CMD...: run under `unshare --mount`. /var/spool
    # shows VARSPOOL; /etc shows ETCTOP layered over the real /etc (read-only
    # overlay), with ETCTOP/dma and ETCTOP/nullmailer bound over /etc/dma and
    # /etc/nullmailer (so that a host's own config would be hidden); with NMROOT,
    # nullmailer's usr/sbin, usr/bin and usr/lib are layered over the system's.
    cat >"$T/in-ns.sh" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
varspool=$1 etctop=$2 nmroot=$3
shift 3
mount --bind "$varspool" /var/spool
mount -t overlay overlay -o "lowerdir=$etctop:/etc" /etc
for d in dma nullmailer; do
    if [[ -d $etctop/$d ]]; then mount --bind "$etctop/$d" "/etc/$d"; fi
done
if [[ $nmroot != - ]]; then
    for d in usr/sbin usr/bin usr/lib; do
        mount -t overlay overlay -o "lowerdir=$nmroot/$d:/$d" "/$d"
    done
fi
exec "$@"
SH
    chmod 755 "$T/in-ns.sh"

    # loop.sh STAMPS MSGDIR CMD...: give every MSGDIR/*.eml, in name order, to its
    # own CMD process on stdin, one after the other.
    cat >"$T/loop.sh" <<'SH'
#!/usr/bin/env bash
set -u
stamps=$1 dir=$2
shift 2
fail=0 n=0
start=$EPOCHREALTIME
echo "$start" >"$stamps.start"
for f in "$dir"/*.eml; do
    "$@" <"$f" >/dev/null 2>>"$stamps.err" || fail=$((fail + 1))
    n=$((n + 1))
done
echo "$start $EPOCHREALTIME $n $fail" >"$stamps"
SH
    chmod 755 "$T/loop.sh"
}

# --------------------------------------------------------------------------
# relaymail (the sendmail face and the queue runner) and its sink (the TLS server)
# --------------------------------------------------------------------------
RM_DIR="" SINK_BIN="" SINK_STATE="" CERT="" FP_COLON="" FP_HEX=""

# Build when the binary is missing or older than the sources (unless BENCH_NO_BUILD=1).
# If the build fails but a binary exists, it is used, and the report says so.
setup_relaymail() {
    build_relaymail || die "no relaymail binary at $RELAYMAIL_BIN"
    # Private copies, so that a concurrent rebuild cannot swap the binary mid-run.
    # The sink gets its own copy, so that stray-process cleanup can tell them apart.
    RM_DIR=$T/relaymail
    mkdir -p "$RM_DIR/bin" "$T/sink"
    cp "$RELAYMAIL_BIN" "$RM_DIR/bin/relaymail"
    # sendmail is the small submitter beside relaymail, as installed (a
    # build without one: relaymail itself).
    local submitter
    submitter=$(dirname "$RELAYMAIL_BIN")/relaymail-sendmail
    if [[ -x $submitter ]]; then
        cp "$submitter" "$RM_DIR/bin/relaymail-sendmail"
        ln -s relaymail-sendmail "$RM_DIR/bin/sendmail"
    else
        ln -s relaymail "$RM_DIR/bin/sendmail"
    fi
    SINK_BIN=$T/sink/relaymail-sink
    cp "$RELAYMAIL_BIN" "$SINK_BIN"
    "$SINK_BIN" sink --help 2>/dev/null | grep -q -- '--listener' || die "$RELAYMAIL_BIN has no usable 'sink' subcommand"
    local version
    version=$("$RM_DIR/bin/relaymail" --version 2>/dev/null | head -1 || true)
    echo "${version:-relaymail (unknown version)} ($BUILD_NOTE; sha256 $(sha256sum "$RM_DIR/bin/relaymail" | cut -c1-16))" >>"$T/versions.txt"
    printf '%s\n' "$AUTH_PASS" >"$T/password"
    chmod 600 "$T/password"

    # Start the sink once to have it generate its certificate; every program is
    # configured to trust exactly that certificate (CA file or pinned fingerprint).
    SINK_STATE=$S/sink-state
    mkdir -p "$SINK_STATE"
    cat >"$T/sink/sink.toml" <<EOF
hostname = "sink.example.com"
[log]
syslog = false
EOF
    local port
    port=$(py freeport)
    start_server tls "$port" "$T/w/sink-init" || die "relaymail sink did not start (see $T/w/sink-init)"
    stop_server
    CERT=$SINK_STATE/sink-cert.pem
    [[ -s $CERT ]] || die "the sink did not write $CERT"
    chmod 644 "$CERT"
    FP_COLON=$(py fingerprint "$CERT" :)
    FP_HEX=$(py fingerprint "$CERT" "")
}

relaymail_config() {
    local W=$1 kind=$2 port=$3 cfg=$1/relaymail.toml
    mkdir -p "$W/spool"
    {
        echo "hostname = \"bench.example.com\""
        echo "spool_dir = \"$W/spool\""
        echo "[smarthost]"
        echo "host = \"127.0.0.1\""
        echo "port = $port"
        if [[ $kind == tls ]]; then
            echo "tls = \"starttls\""
            echo "ca_file = \"$CERT\""
            echo "tls_server_name = \"localhost\""
            echo "username = \"$AUTH_USER\""
            echo "password_file = \"$T/password\""
        else
            echo "tls = \"none\""
        fi
        echo "connections = 4"
        echo "[rewrite]"
        echo "aliases_file = \"\""
        echo "[queue]"
        echo "max_message_size = \"1GiB\""
        echo "[log]"
        echo "syslog = false"
    } >"$cfg"
    SUBMIT="$RM_DIR/bin/sendmail -C $cfg -i -f $SENDER $RCPT"
    SUBMIT_Q="$RM_DIR/bin/sendmail -C $cfg -odq -i -f $SENDER $RCPT"
    FLUSH="$RM_DIR/bin/relaymail -C $cfg flush"
    FLUSH_BIG=$FLUSH
    NSPFX="" XENV=""
}
relaymail_start() { :; }
relaymail_stop() { :; }
relaymail_queued() { find "$1/spool/queue" -type f -name '*.msg' 2>/dev/null | wc -l; }
relaymail_settle() { :; }

# --------------------------------------------------------------------------
# msmtp: a plain client (delivers in the foreground); its queue is the packaged
# msmtpq script (/usr/libexec/msmtp/msmtpq/msmtpq): `msmtpq` queues a message when
# msmtp fails, `msmtpq --q-mgmt -r` (what `msmtp-queue -r` runs) sends the queue,
# one msmtp process per message.
# --------------------------------------------------------------------------
MSMTP_BIN="" MSMTPQ=""
setup_msmtp() {
    fetch_deb msmtp
    MSMTP_BIN=$T/root-msmtp/usr/bin/msmtp
    MSMTPQ=$T/root-msmtp/usr/libexec/msmtp/msmtpq/msmtpq
    [[ -x $MSMTP_BIN ]] || die "msmtp not found in the package"
    "$MSMTP_BIN" --version >/dev/null || die "msmtp does not run (missing libraries?)"
    [[ -f $MSMTPQ ]] || MSMTPQ=""
}
msmtp_config() {
    local W=$1 kind=$2 port=$3 rc=$1/msmtprc
    mkdir -p "$W/queue"
    {
        echo "defaults"
        echo "syslog off"
        echo "account default"
        echo "host 127.0.0.1"
        echo "port $port"
        echo "domain bench.example.com"
        echo "from $SENDER"
        if [[ $kind == tls ]]; then
            echo "tls on"
            echo "tls_starttls on"
            echo "tls_trust_file $CERT"
            echo "tls_host_override localhost"
            echo "auth on"
            echo "user $AUTH_USER"
            echo "password $AUTH_PASS"
        else
            echo "tls off"
            echo "auth off"
        fi
    } >"$rc"
    chmod 600 "$rc"
    # msmtpq runs "$MSMTP" with the arguments it saved: a wrapper adds -C.
    printf '#!/bin/sh\nexec %s -C %s "$@"\n' "$MSMTP_BIN" "$rc" >"$W/msmtp"
    chmod 755 "$W/msmtp"
    SUBMIT="$MSMTP_BIN -C $rc -i -f $SENDER $RCPT"
    XENV="MSMTP=$W/msmtp MSMTPQ_Q=$W/queue MSMTPQ_LOG=$W/msmtpq.log EMAIL_CONN_TEST=x EMAIL_QUEUE_QUIET=t"
    if [[ -n $MSMTPQ ]]; then
        SUBMIT_Q="/bin/bash $MSMTPQ -i -f $SENDER $RCPT"
        FLUSH="/bin/bash $MSMTPQ --q-mgmt -r"
    else
        SUBMIT_Q="" FLUSH=""
    fi
    FLUSH_BIG=$FLUSH
    NSPFX=""
}
msmtp_start() { :; }
msmtp_stop() { :; }
msmtp_queued() { find "$1/queue" -name '*.mail' 2>/dev/null | wc -l; }
msmtp_settle() { :; }

# --------------------------------------------------------------------------
# esmtp: a plain client on libESMTP (delivers in the foreground, one session per
# message) with no queue of its own, so it has no backlog or big-message run.
# libESMTP 1.1 trusts only ~/.config/libesmtp/ca.pem (0600, directories 0700)
# and checks the server's name against `hostname`: HOME is a private one and
# the sink's certificate (issued for localhost) is that file. Its SASL
# plugins have a compiled-in path, so libesmtp6 is installed (fetch_deb
# installs missing library dependencies), not just unpacked.
# --------------------------------------------------------------------------
ESMTP_BIN=""
setup_esmtp() {
    fetch_deb esmtp
    ESMTP_BIN=$T/root-esmtp/usr/bin/esmtp
    [[ -x $ESMTP_BIN ]] || die "esmtp not found in the package"
    "$ESMTP_BIN" -bp >/dev/null 2>&1 || die "esmtp does not run (missing libraries?)"
}
esmtp_config() {
    local W=$1 kind=$2 port=$3 rc=$1/esmtprc
    {
        if [[ $kind == tls ]]; then
            echo "hostname = localhost:$port"
            echo "username = \"$AUTH_USER\""
            echo "password = \"$AUTH_PASS\""
            echo "starttls = required"
        else
            echo "hostname = 127.0.0.1:$port"
            echo "starttls = disabled"
        fi
        echo "helo = bench.example.com"
    } >"$rc"
    chmod 600 "$rc"
    mkdir -p "$W/home/.config/libesmtp"
    chmod 700 "$W/home" "$W/home/.config" "$W/home/.config/libesmtp"
    cp "$CERT" "$W/home/.config/libesmtp/ca.pem"
    chmod 600 "$W/home/.config/libesmtp/ca.pem"
    SUBMIT="$ESMTP_BIN -C $rc -i -f $SENDER $RCPT"
    # libESMTP hangs after STARTTLS when a server sends TLS 1.3 session
    # tickets (the sink sends none): such a hang fails that one submission.
    [[ $kind == tls ]] && SUBMIT="timeout 10 $SUBMIT"
    SUBMIT_Q="" FLUSH="" FLUSH_BIG=""
    NSPFX="" XENV="HOME=$W/home"
}
esmtp_start() { :; }
esmtp_stop() { :; }
esmtp_queued() { echo 0; }
esmtp_settle() { :; }

# --------------------------------------------------------------------------
# dma: spool /var/spool/dma and config /etc/dma are compiled in; it runs in a
# private mount namespace (see in-ns.sh). As root it drops to the mail user.
# Default mode: `sendmail` queues, then forks a detached process that delivers.
# `sendmail -bq` only queues; `dma -q` runs the queue (it daemonizes and forks one
# delivery process per message); `dma -D -q` does the same in the foreground, and
# with a single queued message delivers it in that very process.
# --------------------------------------------------------------------------
DMA_ROOT=""
setup_dma() {
    ((USE_NS)) || { SKIPPED+=("dma: needs private mount namespaces"); return 1; }
    fetch_deb dma
    DMA_ROOT=$T/root-dma
    [[ -x $DMA_ROOT/usr/sbin/dma ]] || die "dma not found in the package"
}
dma_config() {
    local W=$1 kind=$2 port=$3
    mkdir -p "$W/varspool/dma" "$W/etc/dma"
    chown root:mail "$W/varspool/dma"
    chmod 2770 "$W/varspool/dma"
    {
        echo "SMARTHOST 127.0.0.1"
        echo "PORT $port"
        echo "MAILNAME bench.example.com"
        echo "SPOOLDIR /var/spool/dma"
        echo "NULLCLIENT"
        if [[ $kind == tls ]]; then
            echo "SECURETRANSFER"
            echo "STARTTLS"
            echo "FINGERPRINT $FP_HEX"
            echo "AUTHPATH /etc/dma/auth.conf"
        fi
    } >"$W/etc/dma/dma.conf"
    echo "$AUTH_USER|127.0.0.1:$AUTH_PASS" >"$W/etc/dma/auth.conf"
    chown root:mail "$W/etc/dma/dma.conf" "$W/etc/dma/auth.conf"
    chmod 640 "$W/etc/dma/dma.conf" "$W/etc/dma/auth.conf"
    SUBMIT="$DMA_ROOT/usr/sbin/sendmail -i -f $SENDER $RCPT"
    SUBMIT_Q="$DMA_ROOT/usr/sbin/sendmail -bq -i -f $SENDER $RCPT"
    FLUSH="$DMA_ROOT/usr/sbin/dma -q"
    FLUSH_BIG="$DMA_ROOT/usr/sbin/dma -D -q"
    NSPFX="unshare --mount --propagation private -- $T/in-ns.sh $W/varspool $W/etc -"
    XENV=""
}
dma_start() { :; }
dma_stop() { :; }
dma_queued() { find "$1/varspool/dma" -type f -name 'Q*' 2>/dev/null | wc -l; }
dma_settle() { :; }

# --------------------------------------------------------------------------
# nullmailer: /etc/nullmailer, /var/spool/nullmailer, /usr/lib/nullmailer and its
# helpers in /usr/sbin and /usr/bin are compiled in: private mount namespace.
# sendmail -> nullmailer-inject -> nullmailer-queue (setuid mail) queues and pulls
# the trigger FIFO; the nullmailer-send daemon (run as mail, as Debian does) sends,
# running /usr/lib/nullmailer/smtp once per message. Without the daemon nothing is
# sent (queue only). With `pausetime` 0 nullmailer-send makes one pass and exits.
# --------------------------------------------------------------------------
NM_ROOT=""
setup_nullmailer() {
    ((USE_NS)) || { SKIPPED+=("nullmailer: needs private mount namespaces"); return 1; }
    fetch_deb nullmailer
    NM_ROOT=$T/root-nullmailer
    [[ -x $NM_ROOT/usr/sbin/nullmailer-send && -x $NM_ROOT/usr/lib/nullmailer/smtp ]] ||
        die "nullmailer-send or its smtp module not found in the package"
}
nullmailer_config() {
    local W=$1 kind=$2 port=$3 mode=$4
    mkdir -p "$W/varspool" "$W/etc/nullmailer"
    cp -a "$NM_ROOT/var/spool/nullmailer" "$W/varspool/nullmailer"
    mkfifo "$W/varspool/nullmailer/trigger"
    chown mail:root "$W/varspool/nullmailer/trigger"
    chmod 622 "$W/varspool/nullmailer/trigger"
    # Debian's nullmailer takes its host name from /etc/mailname, not from `me`.
    echo bench.example.com >"$W/etc/mailname"
    echo example.com >"$W/etc/nullmailer/defaultdomain"
    if [[ $kind == tls ]]; then
        echo "localhost smtp port=$port starttls x509cafile=$CERT user=$AUTH_USER pass=$AUTH_PASS"
    else
        echo "127.0.0.1 smtp port=$port"
    fi >"$W/etc/nullmailer/remotes"
    chown root:mail "$W/etc/nullmailer/remotes"
    chmod 640 "$W/etc/nullmailer/remotes"
    # Queue runs (backlog, big message): one pass, then exit.
    [[ $mode == e2e ]] || echo 0 >"$W/etc/nullmailer/pausetime"
    SUBMIT="$NM_ROOT/usr/sbin/sendmail -i -f $SENDER $RCPT"
    SUBMIT_Q=$SUBMIT
    FLUSH="setpriv --reuid=mail --regid=mail --init-groups /usr/sbin/nullmailer-send"
    FLUSH_BIG=$FLUSH
    NSPFX="unshare --mount --propagation private -- $T/in-ns.sh $W/varspool $W/etc $NM_ROOT"
    XENV=""
}
# End to end: the daemon runs for the whole submission loop.
nullmailer_start() {
    local W=$1 mode=$2
    [[ $mode == e2e ]] || return 0
    # shellcheck disable=SC2086  # NETNS, NSPFX and FLUSH are word lists
    $NETNS $NSPFX $FLUSH >"$W/nullmailer-send.log" 2>&1 &
    NM_PID=$!
    DAEMON_PIDS+=("$NM_PID")
    sleep 0.3
    kill -0 "$NM_PID" 2>/dev/null || { cat "$W/nullmailer-send.log" >&2; return 1; }
}
nullmailer_stop() {
    [[ -n ${NM_PID:-} ]] && kill_pid "$NM_PID"
    NM_PID=""
}
nullmailer_queued() { find "$1/varspool/nullmailer/queue" "$1/varspool/nullmailer/tmp" -type f 2>/dev/null | wc -l; }
nullmailer_settle() { :; }

# --------------------------------------------------------------------------
# Postfix: the installed Postfix, as a private instance (tests/postfix/start.sh
# does the same): its own config dir, queue, data dir and master, no listener,
# relayhost = the benchmark's smarthost. Submission: /usr/sbin/sendmail -C DIR
# (postdrop -> pickup -> cleanup -> qmgr -> smtp). Queue only: defer_transports =
# smtp (messages wait in the deferred queue); `postqueue -f` sends them anyway.
# --------------------------------------------------------------------------
setup_postfix() {
    echo "postfix $(dpkg-query -W -f '${Version}' postfix) (installed; private instance)" >>"$T/versions.txt"
}
postfix_config() {
    local W=$1 kind=$2 port=$3 mode=$4 meta
    meta=$(postconf -dh meta_directory)
    mkdir -p "$W/etc" "$W/queue" "$W/data"
    chown postfix "$W/data"
    cat >"$W/etc/main.cf" <<EOF
compatibility_level = 3.6
meta_directory = $meta
queue_directory = $W/queue
data_directory = $W/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example.com
mydomain = example.com
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost = [127.0.0.1]:$port
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 1073741824
mailbox_size_limit = 1073741824
maillog_file_prefixes = $W
maillog_file = $W/maillog
EOF
    if [[ $kind == tls ]]; then
        echo "[127.0.0.1]:$port $AUTH_USER:$AUTH_PASS" >"$W/etc/sasl_passwd"
        chmod 600 "$W/etc/sasl_passwd"
        cat >>"$W/etc/main.cf" <<EOF
smtp_tls_security_level = fingerprint
smtp_tls_fingerprint_digest = sha256
smtp_tls_fingerprint_cert_match = $FP_COLON
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$W/etc/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
EOF
    else
        echo "smtp_tls_security_level = none" >>"$W/etc/main.cf"
    fi
    [[ $mode == e2e ]] || echo "defer_transports = smtp" >>"$W/etc/main.cf"
    cat >"$W/etc/master.cf" <<'EOF'
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
    SUBMIT="/usr/sbin/sendmail -C $W/etc -i -f $SENDER $RCPT"
    SUBMIT_Q=$SUBMIT
    FLUSH="postqueue -c $W/etc -f"
    FLUSH_BIG=$FLUSH
    NSPFX="" XENV=""
}
postfix_start() {
    local W=$1 _
    "$(postconf -dh daemon_directory)/post-install" config_directory="$W/etc" \
        meta_directory="$(postconf -dh meta_directory)" create-missing >"$W/post-install.log" 2>&1
    PF_DIRS+=("$W")
    # shellcheck disable=SC2086  # NETNS is a word list
    timeout 60 $NETNS postfix -c "$W/etc" start >"$W/postfix-start.log" 2>&1 ||
        { cat "$W/postfix-start.log" >&2; return 1; }
    for _ in $(seq 100); do
        [[ -S $W/queue/public/pickup && -s $W/queue/pid/master.pid ]] && return 0
        sleep 0.1
    done
    log "postfix did not start (see $W/maillog)"
    return 1
}
postfix_stop() { stop_postfix "$1"; }
postfix_queued() {
    find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" "$1/queue/hold" \
        -type f 2>/dev/null | wc -l
}
# Queue only: wait until every message has been picked up and deferred.
postfix_settle() {
    local W=$1 want=$2 _
    for _ in $(seq $((TIMEOUT * 10))); do
        (($(find "$W/queue/deferred" -type f | wc -l) >= want)) && return 0
        sleep 0.1
    done
    return 1
}

# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

# start_server plain|tls PORT DIR: a fresh server for one run.
#   plain  smtp-sink -c (running counters on stdout: sessions ended, QUITs, messages)
#          -d (one dump file per message, on /dev/shm), as nobody;
#   tls    relaymail sink, STARTTLS, AUTH accept-any, Maildir on /dev/shm; one JSON
#          event line per stored message on stdout.
start_server() {
    local kind=$1 port=$2 dir=$3 store
    mkdir -p "$dir"
    store=$(mktemp -d "$S/store.XXXXXX")
    SRV_KIND=$kind SRV_PORT=$port SRV_DIR=$store
    if [[ $kind == plain ]]; then
        chown nobody "$store"
        $NETNS /usr/sbin/smtp-sink -c -u nobody -h sink.example.com -m 2048 -d "$store/m." \
            "127.0.0.1:$port" 2048 >"$dir/server.counters" 2>"$dir/server.err" &
        SRV_PID=$!
        SRV_FEED=$dir/server.counters SRV_STORE=$store
    else
        $NETNS "$SINK_BIN" -C "$T/sink/sink.toml" sink --listener "127.0.0.1:$port=starttls" \
            --auth accept-any --store "maildir:$store/maildir" --state-dir "$SINK_STATE" \
            --hostname sink.example.com --max-connections 4096 --max-message-size 1GiB \
            >"$dir/server.events" 2>"$dir/server.err" &
        SRV_PID=$!
        SRV_FEED=$dir/server.events SRV_STORE=$dir/server.events
    fi
    if ! py listening "$port" 10; then
        cat "$dir/server.err" >&2
        stop_server
        return 1
    fi
}

stop_server() {
    [[ -n $SRV_PID ]] || return 0
    kill_pid "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}

# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------

# json_get FILE KEY: one field of a one-line JSON object ("" when null/missing).
json_get() {
    "$PYTHON" -c 'import json,sys
try: v = json.load(open(sys.argv[1])).get(sys.argv[2])
except Exception: v = None
print("" if v is None else v)' "$1" "$2"
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b }'; }

# finish_run P CASE W T0 [extra key=value...]: wait for the sessions to end, count,
# check, stop everything, record one result line.
finish_run() {
    local p=$1 case=$2 W=$3 t0=$4 label=$5
    shift 5
    local reached count sessions last elapsed total distinct queued status note="" left
    reached=$(json_get "$W/wait.json" reached)
    count=$(json_get "$W/wait.json" count)
    left=$(py idle "$SRV_PORT" 15 || true)
    py inspect "$SRV_KIND" "$SRV_STORE" "$TOKEN" "$label" >"$W/inspect.json"
    total=$(json_get "$W/inspect.json" total)
    distinct=$(json_get "$W/inspect.json" distinct)
    last=$(json_get "$W/inspect.json" last)
    # Sessions: connections accepted in the private network namespace since the
    # run started; the server's own view is kept next to it (smtp-sink: sessions
    # ended; sink: distinct client address:port among the stored messages, which
    # undercounts when the kernel reuses a client port for a later connection).
    local sess_server="" client_ports=""
    if [[ $SRV_KIND == plain ]]; then
        sess_server=$(py sess "$SRV_FEED")
    else
        client_ports=$(json_get "$W/inspect.json" sessions)
    fi
    if [[ -n $NETNS ]]; then
        sessions=$(($(py passive_opens) - PO_BASE))
    else
        sessions=${sess_server:-$client_ports}
    fi
    queued=$("${p}_queued" "$W")
    "${p}_stop" "$W"
    stop_server
    local strays
    strays=$(kill_strays)
    elapsed=""
    [[ -n $last ]] && elapsed=$(fsub "$last" "$t0")
    local want=$RUN_N maxsize
    total=${total:-0} distinct=${distinct:-0} queued=${queued:-0}
    maxsize=$(json_get "$W/inspect.json" max_size)
    if [[ $reached == True && $distinct == "$want" ]]; then
        status=ok
    else
        status="failed: $distinct/$want arrived"
        [[ $reached == True ]] || status+=" (gave up waiting)"
    fi
    if ((RUN_MINSIZE > 0 && ${maxsize:-0} < RUN_MINSIZE)); then
        status="failed: stored copy is ${maxsize:-0} bytes, expected at least $RUN_MINSIZE"
    fi
    ((total > distinct)) && note+="$((total - distinct)) duplicate(s) arrived; "
    ((queued > 0)) && { note+="$queued message(s) still queued after the run; "; [[ $status == ok ]] && status="ok, $queued left queued"; }
    [[ ${left:-0} != 0 ]] && note+="$left session(s) still open 15 s after the last arrival; "
    [[ $strays != 0 ]] && note+="$strays process(es) still running afterwards (killed); "
    local msg_s=""
    [[ $status == ok* && -n $elapsed ]] && msg_s=$(fdiv "$want" "$elapsed")
    py record "$BENCH_OUT/deliver-results.jsonl" case="$case" program="$p" status="$status" \
        n="$want" arrived="$distinct" total="$total" count="$count" t0="$t0" last="$last" \
        elapsed="$elapsed" msg_s="$msg_s" sessions="$sessions" server_sessions="$sess_server" \
        client_ports="$client_ports" queued_after="$queued" \
        max_size="$maxsize" note="${note%; }" "$@"
    if [[ $case == big ]]; then
        log "$case $p: $status, total ${elapsed}s, peak RSS $(fdiv "${RSS_KIB:-0}" 1024) MiB${note:+ ($note)}"
    else
        log "$case $p: $status${msg_s:+, $msg_s msg/s}, sessions $sessions${note:+ ($note)}"
    fi
    rm -rf "$W/msgs" "$SRV_DIR"
}

# skip_run P CASE REASON
skip_run() {
    py record "$BENCH_OUT/deliver-results.jsonl" case="$2" program="$1" status="n/a: $3" n="$N"
    log "$2 $1: n/a: $3"
}

# save_logs W LABEL: keep the run's small files in BENCH_OUT/deliver-runs/LABEL/.
save_logs() {
    local W=$1 label=$2 f dest=$BENCH_OUT/deliver-runs/$2
    mkdir -p "$dest"
    for f in "$W"/*.err "$W"/*.log "$W"/loop* "$W"/flush.* "$W"/maillog "$W"/*.json "$W"/time.txt \
        "$W"/server.counters "$W"/server.events "$W"/*.toml "$W"/msmtprc "$W"/etc/main.cf "$W"/etc/dma/dma.conf \
        "$W"/etc/nullmailer/remotes; do
        [[ -f $f && -s $f ]] || continue
        cp "$f" "$dest/" 2>/dev/null || true
    done
}

# 1. End to end: BENCH_MESSAGES submissions in a loop, default delivery mode.
run_e2e() {
    local p=$1 kind=$2 case=e2e-$2 label=e2e-$2-$1 W port rc
    W=$T/w/$label
    mkdir -p "$W"
    port=$(py freeport)
    "${p}_config" "$W" "$kind" "$port" e2e
    py gen "$W/msgs" "$N" "$TOKEN" "$label" "$SENDER" "$RCPT"
    RUN_N=$N
    start_server "$kind" "$port" "$W" || { skip_run "$p" "$case" "server did not start"; return 0; }
    if ! "${p}_start" "$W" e2e; then
        stop_server
        py record "$BENCH_OUT/deliver-results.jsonl" case="$case" program="$p" status="failed: could not start its daemon" n="$N"
        return 0
    fi
    log "$case $p: $N submissions"
    PO_BASE=$(py passive_opens)
    py wait "$SRV_KIND" "$SRV_FEED" "$N" $((TIMEOUT + WAIT)) "$W/loop.done" "$WAIT" >"$W/wait.json" &
    local wpid=$!
    rc=0
    # shellcheck disable=SC2086  # XENV, NSPFX and SUBMIT are word lists
    timeout --kill-after=5 "$TIMEOUT" env $XENV $NETNS $NSPFX /bin/bash "$T/loop.sh" "$W/loop" "$W/msgs" $SUBMIT || rc=$?
    touch "$W/loop.done"
    wait "$wpid" || true
    local start end n fail t0 submit_s=""
    t0=$(cat "$W/loop.start" 2>/dev/null || echo "")
    if [[ -s $W/loop ]]; then
        read -r start end n fail <"$W/loop"
        submit_s=$(fsub "$end" "$start")
    else
        fail="loop timed out after ${TIMEOUT}s"
    fi
    [[ -n $t0 ]] || t0=0
    finish_run "$p" "$case" "$W" "$t0" "$label" submit_s="$submit_s" submit_failures="$fail" loop_rc="$rc"
    save_logs "$W" "$label"
}

# 2. Backlog: queue with the smarthost down, then start it and time the queue run.
run_backlog() {
    local p=$1 kind=$2 case=backlog-$2 label=backlog-$2-$1 W port rc=0
    W=$T/w/$label
    mkdir -p "$W"
    port=$(py freeport)
    "${p}_config" "$W" "$kind" "$port" queue
    if [[ -z $SUBMIT_Q || -z $FLUSH ]]; then
        skip_run "$p" "$case" "no queue (msmtpq is not packaged)"
        return 0
    fi
    py gen "$W/msgs" "$N" "$TOKEN" "$label" "$SENDER" "$RCPT"
    RUN_N=$N
    "${p}_start" "$W" queue || { skip_run "$p" "$case" "could not start its daemon"; return 0; }
    log "$case $p: queueing $N messages (smarthost down)"
    # shellcheck disable=SC2086
    timeout --kill-after=5 "$TIMEOUT" env $XENV $NETNS $NSPFX /bin/bash "$T/loop.sh" "$W/loop" "$W/msgs" $SUBMIT_Q || rc=$?
    local start end n fail queue_s="" queued
    if [[ -s $W/loop ]]; then
        read -r start end n fail <"$W/loop"
        queue_s=$(fsub "$end" "$start")
    fi
    "${p}_settle" "$W" "$N" || true
    queued=$("${p}_queued" "$W")
    if ((queued != N)); then
        "${p}_stop" "$W"
        kill_strays >/dev/null
        py record "$BENCH_OUT/deliver-results.jsonl" case="$case" program="$p" \
            status="failed: $queued/$N queued" n="$N" queue_s="$queue_s" submit_failures="$fail"
        log "$case $p: only $queued of $N messages were queued"
        save_logs "$W" "$label"
        return 0
    fi
    start_server "$kind" "$port" "$W" || { "${p}_stop" "$W"; skip_run "$p" "$case" "server did not start"; return 0; }
    log "$case $p: queue run ($FLUSH)"
    PO_BASE=$(py passive_opens)
    py wait "$SRV_KIND" "$SRV_FEED" "$N" $((TIMEOUT + WAIT)) "$W/flush.done" "$WAIT" >"$W/wait.json" &
    local wpid=$! t0
    t0=$EPOCHREALTIME
    (
        # shellcheck disable=SC2086
        timeout --kill-after=5 "$TIMEOUT" env $XENV $NETNS $NSPFX $FLUSH >"$W/flush.out" 2>&1
        echo "$? $EPOCHREALTIME" >"$W/flush.rc"
        touch "$W/flush.done"
    ) &
    local fpid=$!
    wait "$wpid" || true
    wait "$fpid" || true
    local flush_rc="" flush_end=""
    read -r flush_rc flush_end <"$W/flush.rc" || true
    [[ -n ${flush_end:-} ]] || flush_end=$EPOCHREALTIME
    finish_run "$p" "$case" "$W" "$t0" "$label" queue_s="$queue_s" flush_rc="$flush_rc" \
        flush_exit_s="$(fsub "$flush_end" "$t0")"
    save_logs "$W" "$label"
}

# 3. One big message: queue it, start the server, run the queue under
# /usr/bin/time -v (Postfix: read VmHWM of its qmgr and smtp processes).
run_big() {
    local p=$1 case=big label=big W port rc=0
    W=$T/w/big-$p
    mkdir -p "$W"
    port=$(py freeport)
    "${p}_config" "$W" plain "$port" queue
    if [[ -z $SUBMIT_Q || -z $FLUSH ]]; then
        skip_run "$p" "$case" "no queue (msmtpq is not packaged)"
        return 0
    fi
    RUN_N=1
    "${p}_start" "$W" queue || { skip_run "$p" "$case" "could not start its daemon"; return 0; }
    log "big $p: queueing the big message"
    # shellcheck disable=SC2086
    timeout --kill-after=5 "$TIMEOUT" env $XENV $NETNS $NSPFX /bin/sh -c "$SUBMIT_Q <$BIG >/dev/null 2>>$W/queue.err" || rc=$?
    "${p}_settle" "$W" 1 || true
    if (($("${p}_queued" "$W") != 1)); then
        "${p}_stop" "$W"
        py record "$BENCH_OUT/deliver-results.jsonl" case="$case" program="$p" status="failed: not queued (rc $rc)" n=1
        save_logs "$W" "big-$p"
        return 0
    fi
    start_server plain "$port" "$W" || { "${p}_stop" "$W"; skip_run "$p" "$case" "server did not start"; return 0; }
    PO_BASE=$(py passive_opens)
    py wait "$SRV_KIND" "$SRV_FEED" 1 $((TIMEOUT + WAIT)) "$W/flush.done" "$WAIT" >"$W/wait.json" &
    local wpid=$! t0 timecmd="/usr/bin/time -v -o $W/time.txt"
    [[ $p == postfix ]] && timecmd=""
    t0=$EPOCHREALTIME
    (
        # shellcheck disable=SC2086
        timeout --kill-after=5 "$TIMEOUT" env $XENV $NETNS $NSPFX $timecmd $FLUSH_BIG >"$W/flush.out" 2>&1
        echo "$? $EPOCHREALTIME" >"$W/flush.rc"
        touch "$W/flush.done"
    ) &
    local fpid=$!
    wait "$wpid" || true
    wait "$fpid" || true
    local rss="" proc="" flush_rc="" flush_end=""
    read -r flush_rc flush_end <"$W/flush.rc" || true
    [[ -n $flush_end ]] || flush_end=$EPOCHREALTIME || true
    [[ -n ${flush_end:-} ]] || flush_end=$EPOCHREALTIME
    if [[ $p == postfix ]]; then
        local mpid
        mpid=$(tr -dc '0-9' <"$W/queue/pid/master.pid")
        py children_hwm "$mpid" >"$W/hwm.json"
        read -r rss proc < <("$PYTHON" -c 'import json,sys
rows = [r for r in json.load(open(sys.argv[1])) if r[1] in ("smtp", "qmgr")]
print(max(r[2] for r in rows) if rows else "", max(rows, key=lambda r: r[2])[1] if rows else "")' "$W/hwm.json")
        proc="VmHWM: largest of qmgr and smtp ($proc)"
    elif [[ -s $W/time.txt ]]; then
        rss=$(py time_rss "$W/time.txt")
        case $p in
            relaymail) proc="relaymail flush" ;;
            dma) proc="dma -D -q" ;;
            nullmailer) proc="nullmailer-send and its smtp children" ;;
            msmtp) proc="msmtpq --q-mgmt -r and its msmtp children" ;;
        esac
        proc="time -v: $proc"
    fi
    RUN_MINSIZE=$(($(stat -c %s "$BIG") * 95 / 100))
    RSS_KIB=$rss
    finish_run "$p" "$case" "$W" "$t0" "big" rss_kib="$rss" rss_proc="$proc" flush_rc="$flush_rc" \
        flush_exit_s="$(fsub "$flush_end" "$t0")"
    RUN_MINSIZE=0
    save_logs "$W" "big-$p"
}

# The ceiling: smtp-source straight into smtp-sink, no queue, ~2 KB messages.
run_ceiling() {
    local name=$1 opts=$2 W port rc=0 t0 t1
    W=$T/w/ceiling-$(echo "$name" | tr -c 'a-z0-9\n' '_')
    mkdir -p "$W"
    port=$(py freeport)
    start_server plain "$port" "$W" || return 0
    PO_BASE=$(py passive_opens)
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086
    timeout "$TIMEOUT" $NETNS /usr/sbin/smtp-source $opts -m "$N" -l 2000 -f "$SENDER" -t "$RCPT" \
        -M bench.example.com "127.0.0.1:$port" >"$W/smtp-source.out" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    py idle "$port" 15 >/dev/null || true
    local sess mesg elapsed
    sess=$(py sess "$SRV_FEED")
    [[ -n $NETNS ]] && sess=$(($(py passive_opens) - PO_BASE))
    mesg=$("$PYTHON" -c 'import re,sys
m = re.findall(r"mesg=(\d+)", open(sys.argv[1]).read()); print(m[-1] if m else 0)' "$SRV_FEED")
    stop_server
    rm -rf "$SRV_DIR"
    elapsed=$(fsub "$t1" "$t0")
    local status=ok
    ((rc == 0 && mesg == N)) || status="failed: $mesg/$N arrived (rc $rc)"
    py record "$BENCH_OUT/deliver-results.jsonl" case=ceiling program="smtp-source $name" status="$status" \
        n="$N" arrived="$mesg" elapsed="$elapsed" msg_s="$(fdiv "$N" "$elapsed")" sessions="$sess"
    log "ceiling smtp-source $name: $(fdiv "$N" "$elapsed") msg/s, sessions $sess"
}

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
report() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "kernel: $(uname -r)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
        echo "queues: $T ($(fs_type "$T")); server stores: $S ($(fs_type "$S"))"
        echo "messages: $N x $(stat -c %s "$T/sample.eml") bytes; big message: $(stat -c %s "$BIG") bytes"
        echo "relaymail binary: $RELAYMAIL_BIN ($BUILD_NOTE)"
        echo "load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
        sed 's/^/version: /' "$T/versions.txt"
        echo "smtp-sink: /usr/sbin/smtp-sink -c -u nobody -h sink.example.com -m 2048 -d STORE/m. 127.0.0.1:PORT 2048"
        echo "sink: relaymail sink --listener 127.0.0.1:PORT=starttls --auth accept-any --store maildir:STORE --max-connections 4096 --max-message-size 1GiB"
        echo "sink certificate sha256: $FP_COLON"
        local s
        for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
    } >"$BENCH_OUT/deliver-environment.txt"
    {
        echo "Delivery benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $LOAD_START at the start;"
        echo "queues on $(fs_type "$T"), server stores on $(fs_type "$S")"
        echo "relaymail: $(grep '^relaymail ' "$T/versions.txt" | head -1)"
        { grep -v '^relaymail ' "$T/versions.txt" || true; } | sed 's/^/peer: /'
        for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
        py report "$BENCH_OUT/deliver-results.jsonl" "$N" "$(stat -c %s "$BIG")" "$BENCH_OUT/deliver-summary.json" \
            "$([[ -n $NETNS ]] && echo "Tcp PassiveOpens in the private network namespace" ||
                echo "no network namespace: smtp-sink's session counter; sink: distinct client ports, a lower bound")"
    } | tee "$BENCH_OUT/deliver-summary.txt"
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
main() {
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    require_root "mount namespaces, a Postfix instance, apt-get"
    ensure_tools
    detect_namespace
    setup_tmp
    mkdir -p "$BENCH_OUT"
    rm -rf "$BENCH_OUT"/deliver-*
    write_helpers
    setup_netns
    setup_relaymail
    PROGRAMS=(relaymail)
    local p kind
    for p in $BENCH_PEERS; do
        declare -F "setup_$p" >/dev/null || die "unknown peer: $p"
        if "setup_$p"; then PROGRAMS+=("$p"); fi
    done
    py gen "$T/sample" 1 "$TOKEN" sample "$SENDER" "$RCPT"
    cp "$T/sample/000001.eml" "$T/sample.eml"
    BIG=$T/big.eml
    py big "$BIG" "$BIG_MB" "$TOKEN" "$SENDER" "$RCPT"
    log "programs: ${PROGRAMS[*]}; $N messages of $(stat -c %s "$T/sample.eml") bytes; big message $(stat -c %s "$BIG") bytes"

    if has_case e2e; then
        for kind in plain tls; do
            for p in "${PROGRAMS[@]}"; do run_e2e "$p" "$kind"; done
        done
    fi
    if has_case ceiling; then
        run_ceiling "-d -s 1" "-d -s 1"
        run_ceiling "-d -s 4" "-d -s 4"
        run_ceiling "-s 1 (no -d)" "-s 1"
    fi
    if has_case backlog; then
        for kind in plain tls; do
            for p in "${PROGRAMS[@]}"; do
                if [[ $kind == tls && $BENCH_BACKLOG_TLS != all && " $BENCH_BACKLOG_TLS " != *" $p "* ]]; then
                    py record "$BENCH_OUT/deliver-results.jsonl" case=backlog-tls program="$p" n="$N" \
                        status="skipped (not in BENCH_BACKLOG_TLS)"
                    continue
                fi
                run_backlog "$p" "$kind"
            done
        done
    fi
    if has_case big; then
        for p in "${PROGRAMS[@]}"; do run_big "$p"; done
    fi
    report
    log "raw results in $BENCH_OUT (deliver-*)"
}

main "$@"
