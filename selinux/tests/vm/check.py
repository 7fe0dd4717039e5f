#!/usr/bin/python3
"""Judges the serial console of the enforcing guest (selinux/tests/vm/run.sh).

The guest's orchestrator prints "RMTEST ..." lines; the kernel prints AVC
records (the test module logs every granted transition into a relaymail
domain). Each check prints "ok" or "FAIL"; the last line is
"vm: N passed, N failed". Exits 1 if any check failed.
"""

import json
import re
import sys

# Who must reach which domain, as "scontext type -> tcontext type" of a
# granted process transition.
TRANSITIONS = [
    ("crond_t", "system_mail_t", "cron mailing a job's output"),
    ("system_cronjob_t", "system_mail_t", "a system cron job (/etc/cron.d)"),
    ("logwatch_t", "logwatch_mail_t", "logwatch from the daily cron job"),
    ("unconfined_t", "user_mail_t", "root's crontab and root's shell (unconfined)"),
    ("user_t", "user_mail_t", "a user_u login (ssh) and crontab"),
    ("staff_t", "user_mail_t", "a staff_u login (ssh)"),
    ("sysadm_t", "user_mail_t", "a sysadm_u crontab"),
    ("staff_sudo_t", "user_mail_t", "sudo (its own mail, and sudo sendmail)"),
    ("initrc_t", "sendmail_t", "a systemd service without a domain of its own"),
    ("init_t", "relaymail_flush_t", "relaymail-flush.service"),
    ("init_t", "relaymail_sink_t", "relaymail-sink.service"),
]

# Messages the sink must hold, by the start of their subject.
SUBJECTS = [
    "vmtest system-cron",
    "Logwatch for ",
    "Cron <root@",
    "vmtest root-shell -odi",
    "vmtest root-shell -odb",
    # (No "Cron <alice@": Debian's policy does not let a user_t job write
    # the file cron collects its output in, so cron has nothing to mail.)
    "vmtest alice-cron",
    "vmtest carol-cron",
    "vmtest alice-ssh -odb",
    "vmtest alice-ssh -odi",
    "vmtest alice-ssh usr-lib-sendmail",
    "vmtest bob-ssh",
    "vmtest bob-sudo",
    "*** SECURITY information",
    "vmtest systemd-service",
    "vmtest flush-timer",
    "vmtest root-cron-stdin",
    "vmtest alice-cron-stdin",
    "vmtest password-command",
]

LABELS = {
    "/usr/sbin/relaymail": "sendmail_exec_t",
    "/etc/relaymail": "relaymail_conf_t",
    "/etc/relaymail/credentials": "relaymail_cred_t",
    "/etc/relaymail/sink-key.pem": "relaymail_sink_cert_t",
    "/etc/relaymail/conf.d/50-lab.toml": "relaymail_conf_t",
    "/var/spool/relaymail/queue": "relaymail_spool_t",
    "/var/log/relaymail/relaymail.jsonl": "relaymail_log_t",
    "/var/lib/relaymail": "relaymail_sink_store_t",
    "/var/lib/relaymail/sink": "relaymail_sink_store_t",
    "/var/lib/relaymail/sink-index.jsonl": "relaymail_sink_store_t",
    "/var/mail/root": "mail_spool_t",
    # Labelled by the admin's fcontext rule; the generated certificate and
    # key by the module's named type transition when the sink made them.
    "/srv/relaymail-lab": "relaymail_sink_store_t",
    "/srv/relaymail-lab/sink-cert.pem": "relaymail_sink_cert_t",
    "/srv/relaymail-lab/sink-key.pem": "relaymail_sink_cert_t",
}

# Exit statuses the orchestrator reports that must be 0.
ZERO_EXITS = [
    "root mailq exit",
    "root newaliases exit",
    "root sendmail -bv exit",
    "root config check exit",
    "root queue list exit",
    "root doctor exit",
    "alice mailq exit",
    "alice queue list exit",
    "usr/lib/sendmail exit",
    "bob sudo sendmail exit",
    "service exit",
    "flush service exit",
    "setsebool on exit",
]

# A denial is relaymail's when it names one of its types, the binary, or
# a domain that runs it.
OURS = re.compile(r'relaymail|sendmail|_mail_t|comm="(mailq|newaliases)"')
AVC = re.compile(r'avc:\s+(denied|granted)\s+\{ ([^}]*) \}.*?scontext=(\S+) tcontext=(\S+) tclass=(\S+)')


def type_of(context):
    parts = context.split(":")
    return parts[2] if len(parts) > 2 else context


def main(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace").replace("\r", "")
    lines = text.splitlines()
    results = []

    def check(ok, what, detail=""):
        results.append(ok)
        print(("ok    " if ok else "FAIL  ") + what + (f": {detail}" if detail and not ok else ""))

    rm = [line[line.index("RMTEST ") + 7:] for line in lines if "RMTEST " in line]
    for line in rm:
        if not line.startswith(("SINK ", "DOCTOR ", "LOG ", "JOURNAL ")):
            print("  guest: " + line)
    for line in rm:
        if line.startswith("DOCTOR ") and not line.startswith("DOCTOR OK"):
            print("  doctor: " + line[7:])

    check(any(l.startswith("enforce=1 ") for l in rm), "the guest runs SELinux enforcing")
    check("DONE" in rm, "the guest test ran to its end")
    fails = [l for l in rm if l.startswith("FAIL ")]
    check(not fails, "no step failed", "; ".join(fails))

    negative_at = next((i for i, l in enumerate(lines) if "RMTEST NEGATIVE BEGIN" in l), len(lines))
    granted, denied, expected_denied, other_denied = set(), [], [], []
    for i, line in enumerate(lines):
        m = AVC.search(line)
        if not m:
            continue
        verdict, perms, scon, tcon, tclass = m.groups()
        if verdict == "granted":
            if tclass == "process" and "transition" in perms.split():
                granted.add((type_of(scon), type_of(tcon)))
            continue
        record = line[line.index("avc:"):]
        if i > negative_at:
            expected_denied.append(record)
        elif OURS.search(line):
            denied.append(record)
        else:
            other_denied.append(record)
    others = sorted({re.sub(r"(pid|ino)=\d+ ", "", r) for r in other_denied})
    print(f"  {len(other_denied)} other denials (not relaymail's), {len(others)} distinct:")
    for record in others[:40]:
        print("    " + record)
    for source, target, who in TRANSITIONS:
        check((source, target) in granted, f"{who}: {source} -> {target}",
              "seen: " + ", ".join(f"{s}->{t}" for s, t in sorted(granted)))
    check(not denied, "no AVC denial names relaymail, its binary or a mail domain",
          "\n      " + "\n      ".join(denied))

    sink = []
    for line in rm:
        if line.startswith("SINK "):
            try:
                sink.append(json.loads(line[5:]))
            except ValueError:
                pass
    subjects = [str(r.get("subject", "")) for r in sink]
    for wanted in SUBJECTS:
        hits = [r for r in sink if str(r.get("subject", "")).startswith(wanted)]
        check(bool(hits), f"the sink received {wanted!r}", "subjects: " + "; ".join(subjects))
        if hits and wanted.startswith("vmtest "):
            r = hits[0]
            check(r.get("tls") not in (None, "", "none") and r.get("auth_user") == "vmtest@lab.example",
                  f"{wanted!r} came over TLS with AUTH", json.dumps(r))
    check(any(l.startswith("MBOX Subject: vmtest lab-mbox") for l in rm),
          "the lab sink stored 'vmtest lab-mbox' in the mbox /var/mail/root")
    check(any(l == "queue left: 0" for l in rm), "nothing is left in the queue")
    check(any(l.startswith("LOG ") and '"status":"sent"' in l.replace(" ", "") for l in rm),
          "the JSON log records deliveries")
    check(any(l == "alice cannot read the credentials" for l in rm),
          "a user cannot read the credentials file")

    labels = {}
    for line in rm:
        if line.startswith("LABEL "):
            parts = line.split()
            if len(parts) >= 3:
                labels[parts[1]] = type_of(parts[2])
    for path, want in LABELS.items():
        check(labels.get(path) == want, f"{path} is {want}", f"it is {labels.get(path)}")

    for prefix in ZERO_EXITS:
        line = next((l for l in rm if l.startswith(prefix + " ")), None)
        check(line is not None and line.endswith(" 0"), f"{prefix} 0", str(line))

    negative = next((l for l in rm if "vmtest negative: sendmail" in l), "")
    check(negative != "" and not negative.endswith("exit 0"),
          "with relaymail_password_command off, password_command is refused", negative or "no result")
    check(any("user_mail_t" in r and "shell_exec_t" in r for r in expected_denied),
          "and the denial shows (user_mail_t may not execute the shell)",
          "denials after the marker: " + "; ".join(expected_denied))

    passed = sum(results)
    failed = len(results) - passed
    if failed:
        print("  relaymail's journal in the guest (last lines):")
        for line in rm:
            if line.startswith("JOURNAL "):
                print("    " + line[8:])
    print(f"vm: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
