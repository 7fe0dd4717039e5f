#!/usr/bin/env bash
# Starts a private Postfix instance for the interop tests, entirely inside
# DIR (nothing under /etc or /var is touched), on loopback only:
#   SUBMIT  STARTTLS required, AUTH (Cyrus sasldb: user/password below)
#   SMTPS   implicit TLS, same AUTH
# Accepted mail is relayed to RELAYHOST (host:port; the tests point it at
# relaymail's sink, to see exactly what arrived). Recipients:
#   reject550@example.net -> 550 5.1.1, temp450@example.net -> 450 4.2.1
#   (unless DIR/unblock-450 exists when the access table is rebuilt).
# Usage: start.sh DIR SUBMIT_PORT SMTPS_PORT RELAYHOST [TLS_PROTOCOLS]
#
# State: the instance starts, STARTTLS and implicit TLS work with the test
# CA, and the access table answers 550/450. Cyrus sasldb AUTH does not yet:
# Debian's smtpd reads smtpd.conf from here but password verification
# fails, so no test uses this harness until AUTH moves to Dovecot's SASL
# (dovecot-core) or the sasldb problem is found.
# Prints nothing on success; needs root (Postfix's master runs as root).
set -euo pipefail
dir=$1 submit=$2 smtps=$3 relayhost=$4 protocols=${5:->=TLSv1.2}
user=alerts password=interop-secret host=relay.test.example
mkdir -p "$dir"/{etc,queue,data,tls,sasl}

# A CA the tests trust, and a server certificate for localhost from it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=relaymail interop CA" \
    -keyout "$dir/tls/ca.key" -out "$dir/tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -keyout "$dir/tls/server.key" -out "$dir/tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$dir/tls/ext"
openssl x509 -req -in "$dir/tls/server.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/tls/ext" -out "$dir/tls/server.pem" 2>/dev/null

# SASL: sasldb with one user, PLAIN and LOGIN.
printf '%s' "$password" | saslpasswd2 -p -c -f "$dir/sasl/sasldb2" -u "$host" "$user"
chown postfix "$dir/sasl" "$dir/sasl/sasldb2" "$dir/data"
cat > "$dir/sasl/smtpd.conf" <<CONF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $dir/sasl/sasldb2
CONF

cat > "$dir/access" <<ACCESS
reject550@example.net 550 5.1.1 <reject550@example.net>: Recipient address rejected: no such user
ACCESS
if [ ! -e "$dir/unblock-450" ]; then
    echo "temp450@example.net 450 4.2.1 <temp450@example.net>: Recipient address rejected: try again later" >> "$dir/access"
fi

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
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/sasl
# libsasl2 on Debian finds smtpd.conf through SASL_CONF_PATH.
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME SASL_CONF_PATH=$dir/sasl
smtpd_sasl_local_domain = $host
smtpd_sasl_security_options = noanonymous
smtpd_tls_cert_file = $dir/tls/server.pem
smtpd_tls_key_file = $dir/tls/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_protocols = $protocols
smtpd_tls_mandatory_protocols = $protocols
smtpd_recipient_restrictions = check_recipient_access texthash:$dir/access, permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_client_connection_rate_limit = 0
smtpd_error_sleep_time = 0
CONF

cat > "$dir/etc/master.cf" <<CONF
127.0.0.1:$submit inet n - n - - smtpd
127.0.0.1:$smtps inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
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

# Create the queue's subdirectories with Postfix's own permissions.
"$(postconf -dh daemon_directory)/post-install" config_directory="$dir/etc" meta_directory="$(postconf -dh meta_directory)" create-missing >/dev/null
postfix -c "$dir/etc" start >/dev/null 2>&1
# Wait until both listeners accept connections (at most 10 s).
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$submit") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$smtps") 2>/dev/null; then
        exit 0
    fi
    sleep 0.1
done
echo "postfix did not start; see $dir/maillog" >&2
exit 1
