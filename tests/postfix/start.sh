#!/usr/bin/env bash
# Starts a private Postfix instance for the interop tests, entirely inside
# DIR (nothing under /etc or /var is touched), on loopback only:
#   SUBMIT  STARTTLS required, AUTH (Dovecot SASL: user/password below)
#   SMTPS   implicit TLS, same AUTH
#   PLAIN   no STARTTLS offered at all (SMTPS port + 1)
#   SMALL   like SUBMIT, but takes at most 10240 bytes and does not
#           advertise SIZE, so a larger message is refused only after
#           its final dot: 552 5.3.4 Error: message file too big
#           (optional; listens only when SMALL_PORT is given)
# Both TLS ports ask for (and log) a client certificate; tls/client.pem
# and tls/client.key are one the CA signed.
# Accepted mail is relayed to RELAYHOST (host:port; the tests point it at
# relaymail's sink, to see exactly what arrived). Recipients:
#   reject550@example.net -> 550 5.1.1, temp450@example.net -> 450 4.2.1,
#   blocked@example.net -> 554 5.7.1 ... blocked using zen.spamhaus.org
#   (DIR/access; every session gets a fresh smtpd, max_use=1, so an edit
#   takes effect at the next connection).
# Usage: start.sh DIR SUBMIT_PORT SMTPS_PORT RELAYHOST [TLS_PROTOCOLS [SMALL_PORT]]
#
# AUTH is answered by a private Dovecot (dovecot-core) started here too.
# Prints nothing on success; needs root (Postfix's master runs as root).
set -euo pipefail
dir=$1 submit=$2 smtps=$3 relayhost=$4 protocols=${5:->=TLSv1.2} small=${6:-}
user=alerts password=interop-secret host=relay.test.example
mkdir -p "$dir"/{etc,queue,data,tls}

# A CA the tests trust, and a server certificate for localhost from it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=relaymail interop CA" \
    -keyout "$dir/tls/ca.key" -out "$dir/tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -keyout "$dir/tls/server.key" -out "$dir/tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$dir/tls/ext"
openssl x509 -req -in "$dir/tls/server.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/tls/ext" -out "$dir/tls/server.pem" 2>/dev/null

# A client certificate from the same CA, for the client-certificate case.
openssl req -newkey rsa:2048 -nodes -subj "/CN=relaymail interop client" \
    -keyout "$dir/tls/client.key" -out "$dir/tls/client.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > "$dir/tls/client-ext"
openssl x509 -req -in "$dir/tls/client.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/tls/client-ext" -out "$dir/tls/client.pem" 2>/dev/null
chmod 600 "$dir/tls/client.key"

# SASL: a private Dovecot whose auth service Postfix asks (PLAIN, LOGIN),
# with one user in a passwd-file.
mkdir -p "$dir/dovecot/run"
printf '%s:{PLAIN}%s\n' "$user" "$password" > "$dir/dovecot/users"
chown postfix "$dir/data"
cat > "$dir/dovecot/dovecot.conf" <<CONF
base_dir = $dir/dovecot/run
state_dir = $dir/dovecot/state
log_path = $dir/dovecot/log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $dir/dovecot/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener $dir/queue/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  chroot =
}
CONF

cat > "$dir/access" <<ACCESS
reject550@example.net 550 5.1.1 <reject550@example.net>: Recipient address rejected: no such user
ACCESS
echo "temp450@example.net 450 4.2.1 <temp450@example.net>: Recipient address rejected: try again later" >> "$dir/access"
echo "blocked@example.net 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org" >> "$dir/access"

cat > "$dir/etc/main.cf" <<CONF
compatibility_level = 3.6
meta_directory = $(postconf -dh meta_directory)
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost = [${relayhost%:*}]:${relayhost##*:}
smtp_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous
smtpd_tls_cert_file = $dir/tls/server.pem
smtpd_tls_key_file = $dir/tls/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
# Ask (never require) for a client certificate; the log says "Trusted TLS
# connection" when one from the CA above is presented.
smtpd_tls_ask_ccert = yes
smtpd_tls_CAfile = $dir/tls/ca.pem
smtpd_tls_loglevel = 1
smtpd_tls_protocols = $protocols
smtpd_tls_mandatory_protocols = $protocols
smtpd_recipient_restrictions = check_recipient_access texthash:$dir/access, permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_client_connection_rate_limit = 0
smtpd_error_sleep_time = 0
CONF

cat > "$dir/etc/master.cf" <<CONF
127.0.0.1:$submit inet n - n - - smtpd -o max_use=1
127.0.0.1:$smtps inet n - n - - smtpd -o max_use=1 -o smtpd_tls_wrappermode=yes
127.0.0.1:$((smtps + 1)) inet n - n - - smtpd -o max_use=1 -o smtpd_tls_security_level=none
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
CONF
if [ -n "$small" ]; then
    # smtpd itself counts the DATA bytes against message_size_limit and
    # answers 552 5.3.4 after the final dot.
    echo "127.0.0.1:$small inet n - n - - smtpd -o max_use=1 -o message_size_limit=10240 -o smtpd_discard_ehlo_keywords=size" >> "$dir/etc/master.cf"
fi

# Create the queue's subdirectories with Postfix's own permissions.
"$(postconf -dh daemon_directory)/post-install" config_directory="$dir/etc" meta_directory="$(postconf -dh meta_directory)" create-missing >/dev/null
dovecot -c "$dir/dovecot/dovecot.conf" </dev/null >/dev/null 2>&1
postfix -c "$dir/etc" start >/dev/null 2>&1
# Wait until the listeners accept connections (at most 10 s).
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$submit") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$smtps") 2>/dev/null \
        && { [ -z "$small" ] || (exec 3<>"/dev/tcp/127.0.0.1/$small") 2>/dev/null; }; then
        exit 0
    fi
    sleep 0.1
done
echo "postfix did not start; see $dir/maillog" >&2
exit 1
