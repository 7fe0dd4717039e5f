#!/usr/bin/env bash
# Stops a private Postfix instance started by start.sh DIR.
set -uo pipefail
postfix -c "$1/etc" abort >/dev/null 2>&1 || postfix -c "$1/etc" stop >/dev/null 2>&1 || true
doveadm -c "$1/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
