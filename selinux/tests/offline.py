#!/usr/bin/python3
"""Offline proof of the relaymail policy module.

Usage: offline.py POLICY CIL [--redhat]

POLICY is the binary policy that selinux/test.sh linked from the host's
policy store, relaymail.pp, relaymail_port.cil and the test-only
relaymail_assert.pp (neverallows, expand-check=1) in a temporary root;
CIL is relaymail.pp converted to CIL. Every access is decided by libsepol
as the kernel would (audit2why: type enforcement, booleans at their
defaults, constraints, roles, MLS), and every domain transition is shown
as its type_transition rule plus the three permissions the kernel checks.

Prints one line per check and "N passed, N failed"; exits 1 on a failure.
Must run with Debian's /usr/bin/python3 (setools and selinux bindings).

--redhat judges a Fedora/RHEL targeted policy (tests/fedora.sh, run by
hand: its sources cannot be fetched in CI) by what differs there:
unconfined_t stays unconfined, user_mail_t may run the shell in the base
policy, and so may it use users' home content (mta_filetrans_home_content
and friends), crond_t may use every file (files_unconfined_type), and
some Debian-only domains do not exist.
"""

import sys

import selinux.audit2why as a2w
import setools

VERDICT = {
    a2w.ALLOW: "allowed",
    a2w.TERULE: "denied (no allow rule)",
    a2w.DONTAUDIT: "denied (not audited)",
    a2w.BOOLEAN: "denied (boolean)",
    a2w.CONSTRAINT: "denied (constraint)",
    a2w.RBAC: "denied (role)",
    a2w.BADSCON: "invalid source context",
    a2w.BADTCON: "invalid target context",
    a2w.BADTCLASS: "invalid class",
    a2w.BADPERM: "invalid permission",
    a2w.BADCOMPUTE: "cannot compute",
}

# A context for each domain that audit2why accepts (a user and role that
# may hold the type).
CONTEXT = {
    "unconfined_t": "unconfined_u:unconfined_r:unconfined_t:s0",
    "user_t": "user_u:user_r:user_t:s0",
    "staff_t": "staff_u:staff_r:staff_t:s0",
    "sysadm_t": "staff_u:sysadm_r:sysadm_t:s0",
    "user_mail_t": "user_u:user_r:user_mail_t:s0",
    "staff_sudo_t": "staff_u:staff_r:staff_sudo_t:s0",
    "sysadm_sudo_t": "staff_u:sysadm_r:sysadm_sudo_t:s0",
    "user_sudo_t": "user_u:user_r:user_sudo_t:s0",
}
ROLE_OF = {"user_u": "user_r", "staff_u": "staff_r", "unconfined_u": "unconfined_r"}


def ctx(domain, like=None):
    """The context of `domain`; entered from `like`, with `like`'s user and role."""
    if like in CONTEXT and domain in ("user_mail_t", "system_mail_t"):
        user, role = CONTEXT[like].split(":")[:2]
        return f"{user}:{role}:{domain}:s0"
    if domain in CONTEXT:
        return CONTEXT[domain]
    return f"system_u:system_r:{domain}:s0"


def obj(t, creator=None):
    """An object of type `t`; one that `creator` creates gets its SELinux user."""
    user = creator.split(":")[0] if creator else "system_u"
    return f"{user}:object_r:{t}:s0"


# Callers, and the mail domain each reaches by executing sendmail_exec_t.
CALLERS = [
    ("crond_t", "system_mail_t", "cron mailing a job's output"),
    ("system_cronjob_t", "system_mail_t", "system cron jobs (/etc/cron.d, cron.daily)"),
    ("logwatch_t", "logwatch_mail_t", "logwatch"),
    ("logrotate_t", "logrotate_mail_t", "logrotate (mail directive)"),
    ("unconfined_t", "user_mail_t", "unconfined shells and root's crontab"),
    ("user_t", "user_mail_t", "user_u shells and crontabs"),
    ("staff_t", "user_mail_t", "staff_u shells and crontabs"),
    ("sysadm_t", "user_mail_t", "sysadm shells and crontabs"),
    ("staff_sudo_t", "user_mail_t", "sudo from staff (its own mail; sudo sendmail)"),
    ("sysadm_sudo_t", "user_mail_t", "sudo from sysadm"),
    ("user_sudo_t", "user_mail_t", "sudo from user_u"),
    ("init_t", "sendmail_t", "systemd: ExecStart=/usr/sbin/sendmail"),
    ("initrc_t", "sendmail_t", "systemd services and init scripts without a domain"),
    ("fsdaemon_t", "system_mail_t", "smartd"),
    ("mdadm_t", "system_mail_t", "mdadm --monitor"),
    ("apcupsd_t", "system_mail_t", "apcupsd"),
    ("nut_upsmon_t", "system_mail_t", "nut upsmon"),
    ("fail2ban_t", "system_mail_t", "fail2ban"),
    ("arpwatch_t", "system_mail_t", "arpwatch"),
]

# Callers the distribution's policy lets run sendmail only once one of its
# own booleans is on (off by default): the domain reached, and the boolean.
# The relaying domain is one of RELAY, checked in full below.
CALLERS_BY_BOOLEAN = [
    ("httpd_t", "system_mail_t", "httpd_can_sendmail", "PHP mail() under Apache or php-fpm"),
    ("httpd_sys_script_t", "system_mail_t", "httpd_can_sendmail", "CGI scripts"),
]

# The domains that do the relaying work.  (Debian's admin_mail_t is in
# user_mail_domain too, but no role may hold it: nothing reaches it.)
RELAY = ["system_mail_t", "user_mail_t", "logwatch_mail_t", "logrotate_mail_t", "sendmail_t",
         "relaymail_flush_t"]

# What the relaying work needs: (target type, class, permissions, why).
RELAY_MAY = [
    ("var_spool_t", "dir", ["search"], "reach /var/spool"),
    ("relaymail_spool_t", "dir", ["search", "read", "write", "add_name", "remove_name", "getattr", "open"],
     "list and change spool directories (and fsync them)"),
    ("relaymail_spool_t", "dir", ["create", "setattr"], "create the spool directories"),
    ("relaymail_spool_t", "file", ["create", "open", "read", "write", "getattr", "setattr"],
     "write queue files"),
    ("relaymail_spool_t", "file", ["rename", "link", "unlink"], "link, rename and remove queue files"),
    ("relaymail_spool_t", "file", ["lock"], "flock a message"),
    ("relaymail_conf_t", "dir", ["search", "read", "getattr", "open"], "list /etc/relaymail and conf.d"),
    ("relaymail_conf_t", "file", ["read", "open", "getattr"], "read the configuration"),
    ("relaymail_cred_t", "file", ["read", "open", "getattr"], "read the credentials"),
    ("relaymail_token_t", "dir", ["search", "write", "add_name", "remove_name"], "keep the OAuth2 token cache"),
    ("relaymail_token_t", "file", ["create", "read", "write", "rename", "unlink", "lock"],
     "renew the OAuth2 token (tmp, fsync, rename)"),
    ("etc_aliases_t", "file", ["read", "open", "getattr"], "read /etc/aliases"),
    ("var_log_t", "dir", ["search"], "reach /var/log"),
    ("relaymail_log_t", "dir", ["search", "add_name", "write"], "create the JSON log"),
    ("relaymail_log_t", "file", ["create", "append", "open", "getattr", "setattr", "lock"],
     "append to the JSON log"),
    ("smtp_port_t", "tcp_socket", ["name_connect"], "connect to 25, 465 and 587"),
    ("relaymail_port_t", "tcp_socket", ["name_connect"], "connect to 2525"),
    ("net_conf_t", "file", ["read", "open"], "read resolv.conf and hosts"),
    ("cert_t", "file", ["read", "open", "getattr"], "read the system CA certificates"),
    ("cert_t", "dir", ["search", "read"], "list the system CA directory"),
    ("devlog_t", "sock_file", ["write"], "write to /dev/log"),
    ("sendmail_exec_t", "file", ["execute", "execute_no_trans", "read", "open", "map"],
     "start the detached delivery child (the same binary, same domain)"),
    ("relaymail_sink_store_t", "dir", ["search", "read"], "relaymail sink list/show/wait"),
    ("relaymail_sink_store_t", "file", ["read", "open", "getattr"], "read the sink's index and messages"),
]
RELAY_SELF = [
    ("process", ["fork", "sigchld", "signal", "setrlimit"],
     "fork the detached child, signal a slow password_command, drop the core limit"),
    ("tcp_socket", ["create", "connect", "read", "write", "getopt", "setopt"], "TCP to the smarthost"),
    ("udp_socket", ["create", "connect", "read", "write"], "DNS over UDP"),
    ("unix_dgram_socket", ["create", "connect", "write"], "syslog"),
    ("fifo_file", ["read", "write"], "pipes to password_command"),
]

SINK_MAY = [
    ("smtp_port_t", "tcp_socket", ["name_bind"], "bind 25, 465, 587"),
    ("relaymail_port_t", "tcp_socket", ["name_bind"], "bind 2525"),
    ("node_t", "tcp_socket", ["node_bind"], "bind any address"),
    ("relaymail_sink_store_t", "dir", ["create", "search", "read", "write", "add_name", "remove_name", "setattr"],
     "create and fill the store and index"),
    ("relaymail_sink_store_t", "file", ["create", "open", "read", "write", "append", "rename", "link", "unlink", "lock"],
     "write messages (Maildir tmp/ -> new/, .eml) and the index"),
    ("relaymail_sink_cert_t", "file", ["create", "open", "read", "write", "setattr"], "generate and keep its certificate"),
    ("var_lib_t", "dir", ["search"], "reach /var/lib"),
    ("mail_spool_t", "dir", ["search", "write", "add_name", "remove_name"], "mbox in /var/mail with its .lock"),
    ("mail_spool_t", "file", ["create", "open", "read", "write", "append", "lock", "unlink", "getattr", "setattr"],
     "append to an mbox under fcntl and dotlock"),
    ("relaymail_conf_t", "file", ["read", "open"], "read the configuration"),
    ("cert_t", "file", ["read", "open"], "cert_file/key_file in the system TLS directories"),
    ("devlog_t", "sock_file", ["write"], "syslog"),
]
SINK_SELF = [
    ("capability", ["net_bind_service"], "bind port 25"),
    ("capability", ["setuid", "setgid", "chown"], "[sink] user: give it the state directory, then become it"),
    ("tcp_socket", ["create", "bind", "listen", "accept", "read", "write", "setopt"], "serve SMTP"),
]

# What no relaying domain, the sink or a user domain may do:
# (source, target, class, permissions, why).
MUST_NOT = []
USERS = ["user_t", "staff_t"]
for u in USERS:
    MUST_NOT += [
        (u, "relaymail_cred_t", "file", ["open", "read"], "a user domain reading the credentials"),
        (u, "relaymail_token_t", "file", ["open", "read"], "a user domain reading the OAuth2 token cache"),
        (u, "relaymail_sink_cert_t", "file", ["open", "read"], "a user domain reading the sink's key"),
        (u, "relaymail_spool_t", "file", ["open", "read"], "a user domain reading queued mail directly"),
        (u, "relaymail_spool_t", "dir", ["write"], "a user domain writing the spool directly"),
        (u, "relaymail_log_t", "file", ["open", "append"], "a user domain forging JSON log lines"),
    ]
for d in ["system_mail_t", "user_mail_t", "logwatch_mail_t", "logrotate_mail_t", "relaymail_flush_t"]:
    MUST_NOT += [
        (d, "user_home_t", "file", ["open", "read"], "a relaying domain reading user home content"),
        (d, "xdg_config_t", "file", ["open", "read"], "a relaying domain reading a user's configuration"),
        (d, "xdg_config_t", "dir", ["search"], "a relaying domain looking into ~/.config"),
        (d, "config_home_t", "file", ["open", "read"], "a relaying domain reading a user's configuration"),
        (d, "admin_home_t", "file", ["open", "read"], "a relaying domain reading root's home content"),
        (d, "smtp_port_t", "tcp_socket", ["name_bind"], "a relaying domain binding the SMTP port"),
        (d, "relaymail_port_t", "tcp_socket", ["name_bind"], "a relaying domain binding 2525"),
        (d, "port_t", "tcp_socket", ["name_bind"], "a relaying domain binding another port"),
        (d, "unreserved_port_t", "tcp_socket", ["name_bind"], "a relaying domain binding a high port"),
        (d, "relaymail_sink_cert_t", "file", ["open", "read"], "a relaying domain reading the sink's key"),
        (d, "relaymail_cred_t", "file", ["open", "write"], "a relaying domain changing the credentials"),
        (d, "relaymail_conf_t", "file", ["open", "write"], "a relaying domain changing the configuration"),
        (d, "relaymail_sink_store_t", "file", ["open", "write"], "a relaying domain changing what the sink stored"),
    ]
    # logrotate_mail_t and logwatch_mail_t read every log (base policy:
    # they mail logs).
    if d not in ("logrotate_mail_t", "logwatch_mail_t"):
        MUST_NOT += [
            (d, "relaymail_log_t", "file", ["open", "read"], "a relaying domain reading the JSON log"),
            (d, "relaymail_log_t", "file", ["open", "write"], "a relaying domain truncating the JSON log"),
        ]
    # user_mail_t may use what a user's mail program leaves in /tmp (base
    # policy, for mutt and the like).
    if d != "user_mail_t":
        MUST_NOT.append((d, "user_tmp_t", "file", ["open", "read"], "a relaying domain reading users' temporary files"))
MUST_NOT += [
    ("relaymail_flush_t", "user_home_dir_t", "dir", ["read"], "the flush service listing home directories"),
    ("relaymail_flush_t", "http_port_t", "tcp_socket", ["name_connect"], "the flush service connecting to a web port"),
    ("relaymail_flush_t", "unreserved_port_t", "tcp_socket", ["name_connect"],
     "the flush service connecting to an unlabelled port (label it: semanage port)"),
    ("relaymail_flush_t", "shell_exec_t", "file", ["execute"], "the flush service running a shell (boolean off)"),
    ("user_mail_t", "shell_exec_t", "file", ["execute"], "password_command's shell without the boolean"),
    ("relaymail_sink_t", "smtp_port_t", "tcp_socket", ["name_connect"], "the sink connecting out to SMTP"),
    ("relaymail_sink_t", "relaymail_port_t", "tcp_socket", ["name_connect"], "the sink connecting out to 2525"),
    ("relaymail_sink_t", "http_port_t", "tcp_socket", ["name_connect"], "the sink connecting out anywhere"),
    ("relaymail_sink_t", "relaymail_cred_t", "file", ["open", "read"], "the sink reading the smarthost credentials"),
    ("relaymail_sink_t", "relaymail_token_t", "file", ["open", "read"], "the sink reading the OAuth2 token"),
    ("relaymail_sink_t", "relaymail_spool_t", "file", ["open", "read"], "the sink reading the queue"),
    ("relaymail_sink_t", "relaymail_spool_t", "dir", ["write"], "the sink writing the queue"),
    ("relaymail_sink_t", "user_home_t", "file", ["open", "read"], "the sink reading home content"),
    ("relaymail_sink_t", "shell_exec_t", "file", ["execute"], "the sink running a shell"),
    ("relaymail_sink_t", "sendmail_exec_t", "file", ["execute_no_trans"], "the sink starting relaymail (it never relays)"),
]

results = []


def check(ok, what, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok or not detail else f" ({detail})"))


def decide(scon, tcon, cls, perms):
    result = a2w.analyze(scon, tcon, cls, perms)
    code = result[0]
    text = VERDICT.get(code, str(code))
    if code == a2w.BOOLEAN and len(result) > 1:
        text += " " + ",".join(f"{b}={v}" for b, v in result[1])
    return code, text


# What a Fedora/RHEL targeted policy decides differently (--redhat).
REDHAT_CALLERS = {"unconfined_t": "no transition"}
REDHAT_SKIP_MUST_NOT = {("user_mail_t", "shell_exec_t"), ("user_mail_t", "user_home_t")}
DEBIAN_ONLY_CALLERS = {"user_sudo_t", "fail2ban_t"}


def main(policy_path, cil_path, redhat=False):
    a2w.init(policy_path)
    policy = setools.SELinuxPolicy(policy_path)
    types = {str(t) for t in policy.types()}
    transitions = {}
    for rule in policy.terules():
        if rule.ruletype.name == "type_transition" and rule.tclass.name == "process":
            for s in rule.source.expand():
                for t in rule.target.expand():
                    transitions[(str(s), str(t))] = str(rule.default)

    def allowed(scon, tcon, cls, perms, what):
        code, text = decide(scon, tcon, cls, perms)
        check(code == a2w.ALLOW, what, text)

    def denied(scon, tcon, cls, perms, what):
        code, text = decide(scon, tcon, cls, perms)
        # An invalid context is not a denial of the access in question.
        check(code in (a2w.TERULE, a2w.DONTAUDIT, a2w.BOOLEAN, a2w.CONSTRAINT, a2w.RBAC), what, text)

    print("== callers: the domain each reaches by running /usr/sbin/sendmail (sendmail_exec_t)")
    for caller, want, who in CALLERS:
        if caller not in types:
            if redhat and caller in DEBIAN_ONLY_CALLERS:
                print(f"skip  {who}: no {caller} in this policy")
                continue
            check(False, f"{who}: {caller} exists in this policy")
            continue
        if redhat and caller in REDHAT_CALLERS:
            want = REDHAT_CALLERS[caller]
            got = transitions.get((caller, "sendmail_exec_t"), "no transition")
            check(got == want, f"{who}: {caller} stays in its own (unconfined) domain", got)
            continue
        got = transitions.get((caller, "sendmail_exec_t"), "no transition")
        check(got == want, f"{who}: {caller} -> {want}", f"type_transition gives {got}")
        src, dst = ctx(caller), ctx(want, caller)
        allowed(src, "system_u:object_r:bin_t:s0", "lnk_file", ["read"],
                f"  {caller} may follow the sendmail link")
        allowed(src, obj("sendmail_exec_t"), "file", ["execute", "read", "open", "getattr"],
                f"  {caller} may execute sendmail_exec_t")
        allowed(src, dst, "process", ["transition"], f"  {caller} may transition to {want}")
        allowed(dst, obj("sendmail_exec_t"), "file", ["entrypoint"],
                f"  {want} may be entered through sendmail_exec_t")

    print("== callers that need a boolean of the distribution's policy")
    for caller, want, boolean, who in CALLERS_BY_BOOLEAN:
        if caller not in types:
            check(False, f"{who}: {caller} exists in this policy")
            continue
        got = transitions.get((caller, "sendmail_exec_t"), "no transition")
        check(got == want, f"{who}: {caller} -> {want} (with {boolean})", f"type_transition gives {got}")
        # Denied now, and by nothing but that boolean: turning it on is
        # all an admin has to do.
        code, text = decide(ctx(caller), ctx(want), "process", ["transition"])
        check(code == a2w.BOOLEAN and boolean in text,
              f"  {caller} may transition to {want} once {boolean} is on", text)
        allowed(ctx(want), obj("sendmail_exec_t"), "file", ["entrypoint"],
                f"  {want} may be entered through sendmail_exec_t")

    print("== the flush and sink services (SELinuxContext= in their units)")
    for domain, exec_type in (("relaymail_flush_t", "relaymail_flush_exec_t"),
                              ("relaymail_sink_t", "relaymail_sink_exec_t")):
        allowed("system_u:system_r:init_t:s0", ctx(domain), "process", ["transition"],
                f"systemd (init_t) may start {domain}")
        allowed(ctx(domain), obj("sendmail_exec_t"), "file", ["entrypoint"],
                f"  {domain} may be entered through the relaymail binary")
        allowed("system_u:system_r:init_t:s0", ctx(domain), "process2", ["nnp_transition"],
                f"  {domain} with NoNewPrivileges=")
        got = transitions.get(("init_t", exec_type), "no transition")
        check(got == domain, f"  init_t -> {domain} from a copy labelled {exec_type}", got)
        got = transitions.get(("initrc_t", exec_type), "no transition")
        check(got == domain, f"  initrc_t (init scripts) -> {domain} from {exec_type}", got)

    print("== what the relaying domains may do")
    for domain in RELAY:
        for target, cls, perms, why in RELAY_MAY:
            creator = ctx(domain) if "create" in perms else None
            allowed(ctx(domain), obj(target, creator), cls, perms, f"{domain}: {why}")
        for cls, perms, why in RELAY_SELF:
            allowed(ctx(domain), ctx(domain), cls, perms, f"{domain}: {why}")
        allowed(ctx(domain), obj("dns_port_t"), "tcp_socket", ["name_connect"], f"{domain}: DNS over TCP")

    allowed(ctx("crond_t"), obj("relaymail_spool_t"), "dir", ["search"],
            "cron may enter the relaymail account's home (the spool) before the cron fallback's job")
    if redhat:
        print("skip  but not read the queue: crond_t is files_unconfined_type there")
    else:
        denied(ctx("crond_t"), obj("relaymail_spool_t"), "file", ["open", "read"],
               "but not read the queue")

    print("== what the sink may do")
    for target, cls, perms, why in SINK_MAY:
        allowed(ctx("relaymail_sink_t"), obj(target), cls, perms, f"relaymail_sink_t: {why}")
    for cls, perms, why in SINK_SELF:
        allowed(ctx("relaymail_sink_t"), ctx("relaymail_sink_t"), cls, perms, f"relaymail_sink_t: {why}")

    print("== what must not be allowed (neverallows held at link time; these are the explicit queries)")
    for source, target, cls, perms, why in MUST_NOT:
        if source not in types or target not in types:
            continue
        if redhat and (source, target) in REDHAT_SKIP_MUST_NOT:
            print(f"skip  not {why}: the base policy allows it there")
            continue
        denied(ctx(source), obj(target), cls, perms, f"not {why}: {source} {cls} {'/'.join(perms)} {target}")

    print("== the booleans")
    bools = {str(b): b.state for b in policy.bools()}
    check(bools.get("relaymail_password_command") is False, "relaymail_password_command exists and is off by default",
          str(bools.get("relaymail_password_command")))
    if not redhat:
        code, text = decide(ctx("user_mail_t"), obj("shell_exec_t"), "file", ["execute"])
        check(code == a2w.BOOLEAN and "relaymail_password_command" in text,
              "user_mail_t may run password_command's shell exactly when it is on", text)
    code, text = decide(ctx("relaymail_flush_t"), obj("bin_t"), "file", ["execute"])
    check(code == a2w.BOOLEAN and "relaymail_password_command" in text,
          "relaymail_flush_t may run bin_t programs exactly when it is on", text)

    check(bools.get("relaymail_oauth2") is False, "relaymail_oauth2 exists and is off by default",
          str(bools.get("relaymail_oauth2")))
    code, text = decide(ctx("relaymail_flush_t"), obj("http_port_t"), "tcp_socket", ["name_connect"])
    check(code == a2w.BOOLEAN and "relaymail_oauth2" in text,
          "relaymail_flush_t may reach an HTTPS token endpoint exactly when it is on", text)

    print("== port labels")
    tcp = [(p.ports.low, p.ports.high, str(p.context.type_)) for p in policy.portcons()
           if str(p.protocol).lower() in ("tcp", "6", "ipproto.tcp")]
    for port, want in ((2525, "relaymail_port_t"), (25, "smtp_port_t"), (465, "smtp_port_t"),
                       (587, "smtp_port_t")):
        # The narrowest range that holds the port decides, as in the kernel.
        holding = sorted((high - low, t) for low, high, t in tcp if low <= port <= high)
        got = holding[0][1] if holding else "none"
        check(got == want, f"tcp {port} is {want}", got)

    print("== the module itself")
    with open(cil_path) as f:
        cil = "\n".join(line.strip() for line in f)
    check("(typeattributeset cil_gen_require sendmail_exec_t)" in cil and "(type relaymail_exec_t)" not in cil,
          "the binary uses the mta module's sendmail_exec_t (no type of its own)")
    relay_types = set(RELAY) | {"admin_mail_t"}
    readers = sorted({line.split()[1] for line in cil.splitlines()
                      if line.startswith("(allow ") and " relaymail_cred_t (file (" in line
                      and " read " in line.replace("(", " ").replace(")", " ")})
    check(readers and set(readers) <= relay_types | {"sysadm_t"},
          "the module lets only the relaying domains (and relaymail_admin: sysadm_t) read the credentials",
          ", ".join(readers))
    check("(typeattributeset cil_gen_require security_file_type)" in cil,
          "the credentials and the sink's key are security file types (no \"read all non-security files\" domain)")
    # init_t and initrc_t appear through init_daemon_domain (starting the
    # two services), sysadm_t through relaymail_admin (administration),
    # crond_t for the relaymail account's home: none of them for sending
    # mail.
    # crond_t may only search the spool (the relaymail account's home).
    def cron_home(line):
        return line.startswith("(allow crond_t relaymail_spool_t (dir (") and set(
            line.split("(dir (")[1].split(")")[0].split()) <= {"getattr", "search", "open"}
    named = sorted({c for c, _, _ in CALLERS for line in cil.splitlines()
                    if line.startswith(f"(allow {c} ") and ("relaymail_" in line or "sendmail" in line)
                    and c not in ("init_t", "initrc_t", "sysadm_t") and not cron_home(line)})
    check(not named, "no rule in the module gives a caller domain access to relaymail's files or binary",
          ", ".join(named))

    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], redhat="--redhat" in sys.argv[3:]))
