# relaymail: build and install from source, with the same layout as the
# RPM and Debian packages (packaging/README.md lists every path).
#
#   make                                  build the binary, man pages, completions
#   sudo make install PREFIX=/usr         the packages' layout, accounts included
#   sudo make install                     the same under /usr/local (link
#                                         /usr/sbin/sendmail yourself)
#   make install DESTDIR=/tmp/root PREFIX=/usr   a staging tree for a package
#   sudo make uninstall PREFIX=/usr       remove the program; keep config, spool, log
#
# Run as root with an empty DESTDIR, `install` also creates the accounts
# (systemd-sysusers, else groupadd/useradd) and sets owners and the setgid
# bit. With DESTDIR it only sets modes that need no account; the packages
# set owners themselves (RPM %attr, Debian dpkg-statoverride).
#
# /etc/relaymail, /var/spool/relaymail, /var/log/relaymail and
# /var/lib/relaymail are built into the binary and do not follow PREFIX.
# An existing relaymail.toml, credentials, cron or logrotate file is never
# overwritten.

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/relaymail
UNITDIR ?= $(PREFIX)/lib/systemd/system
# systemd-sysusers reads /usr/lib/sysusers.d and /etc/sysusers.d only.
SYSUSERSDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/sysusers.d,/etc/sysusers.d)
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# logwatch reads its packaged services under /usr/share/logwatch and the
# local ones under /etc/logwatch.
LOGWATCHCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/logwatch/default.conf/services,/etc/logwatch/conf/services)
LOGWATCHSCRIPTDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/logwatch/scripts/services,/etc/logwatch/scripts/services)
SYSCONFDIR = /etc
# sendmail as a link to relaymail-sendmail (the small submitter, which
# hands anything but a plain submission to relaymail beside it), mailq
# and newaliases as links to relaymail, and their man pages as links to
# relaymail-sendmail.8 (the RPM leaves these to alternatives).
SENDMAIL_LINKS ?= yes
# /usr/lib/sendmail: only where the prefix is /usr.
LIB_SENDMAIL ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/sendmail,)
OWNERSHIP ?= $(if $(DESTDIR),no,$(if $(filter 0,$(shell id -u)),yes,no))

CARGO ?= cargo
CARGOFLAGS ?= --locked
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/relaymail
SUBMITTER := $(TARGET_DIR)/release/relaymail-sendmail
GEN := $(TARGET_DIR)/generated
INSTALL ?= install

# A link's target relative to the link's directory (../sbin/relaymail).
rel = $(shell realpath -m --relative-to=$(dir $(1)) $(2))

.PHONY: all build man completions install install-accounts uninstall check clean

all: build man completions

build:
	$(CARGO) build --release $(CARGOFLAGS)

$(BIN): build

man: $(BIN)
	rm -rf $(GEN)/man
	$(BIN) generate man $(GEN)/man
	gzip -9n $(GEN)/man/*

completions: $(BIN)
	mkdir -p $(GEN)/completions
	$(BIN) generate completion bash >$(GEN)/completions/relaymail
	$(BIN) generate completion zsh >$(GEN)/completions/_relaymail
	$(BIN) generate completion fish >$(GEN)/completions/relaymail.fish

install-accounts:
	@if command -v systemd-sysusers >/dev/null 2>&1; then \
		systemd-sysusers $(DESTDIR)$(SYSUSERSDIR)/relaymail.conf; \
	else \
		getent group relaymail >/dev/null || groupadd --system relaymail; \
		getent passwd relaymail >/dev/null || useradd --system --gid relaymail \
			--home-dir /var/spool/relaymail --no-create-home --shell /usr/sbin/nologin \
			--comment "relaymail queue runner" relaymail; \
		getent passwd relaymail-sink >/dev/null || useradd --system --user-group \
			--home-dir /var/lib/relaymail --no-create-home --shell /usr/sbin/nologin \
			--comment "relaymail SMTP sink" relaymail-sink; \
	fi

install:
	@[ -x $(BIN) ] && [ -x $(SUBMITTER) ] && [ -d $(GEN)/man ] && [ -s $(GEN)/completions/relaymail ] || \
		$(MAKE) --no-print-directory all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
		$(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(LOGWATCHCONFDIR) $(DESTDIR)$(LOGWATCHSCRIPTDIR) \
		$(DESTDIR)$(SYSCONFDIR)/cron.d $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	$(INSTALL) -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/relaymail
	$(INSTALL) -m 0755 $(SUBMITTER) $(DESTDIR)$(SBINDIR)/relaymail-sendmail
ifeq ($(SENDMAIL_LINKS),yes)
	ln -sf relaymail-sendmail $(DESTDIR)$(SBINDIR)/sendmail
	ln -sf $(call rel,$(BINDIR)/mailq,$(SBINDIR)/relaymail) $(DESTDIR)$(BINDIR)/mailq
	ln -sf $(call rel,$(BINDIR)/newaliases,$(SBINDIR)/relaymail) $(DESTDIR)$(BINDIR)/newaliases
ifneq ($(LIB_SENDMAIL),)
	$(INSTALL) -d $(DESTDIR)$(dir $(LIB_SENDMAIL))
	ln -sf $(call rel,$(LIB_SENDMAIL),$(SBINDIR)/relaymail-sendmail) $(DESTDIR)$(LIB_SENDMAIL)
endif
endif
	$(INSTALL) -m 0644 $(GEN)/man/*.8.gz $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 $(GEN)/man/*.5.gz $(DESTDIR)$(MANDIR)/man5/
ifeq ($(SENDMAIL_LINKS),yes)
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man1
	ln -sf relaymail-sendmail.8.gz $(DESTDIR)$(MANDIR)/man8/sendmail.8.gz
	ln -sf ../man8/relaymail-sendmail.8.gz $(DESTDIR)$(MANDIR)/man1/mailq.1.gz
	ln -sf ../man8/relaymail-sendmail.8.gz $(DESTDIR)$(MANDIR)/man1/newaliases.1.gz
endif
	$(INSTALL) -m 0644 $(GEN)/completions/relaymail $(DESTDIR)$(BASHCOMPDIR)/relaymail
	$(INSTALL) -m 0644 $(GEN)/completions/_relaymail $(DESTDIR)$(ZSHCOMPDIR)/_relaymail
	$(INSTALL) -m 0644 $(GEN)/completions/relaymail.fish $(DESTDIR)$(FISHCOMPDIR)/relaymail.fish
	for unit in relaymail-flush.service relaymail-flush.timer relaymail-sink.service; do \
		sed 's|/usr/sbin/relaymail|$(SBINDIR)/relaymail|g' packaging/systemd/$$unit \
			>$(DESTDIR)$(UNITDIR)/$$unit && chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	$(INSTALL) -m 0644 packaging/sysusers/relaymail.conf $(DESTDIR)$(SYSUSERSDIR)/relaymail.conf
	$(INSTALL) -m 0644 packaging/logwatch/conf/services/relaymail.conf $(DESTDIR)$(LOGWATCHCONFDIR)/relaymail.conf
	$(INSTALL) -m 0755 packaging/logwatch/scripts/services/relaymail $(DESTDIR)$(LOGWATCHSCRIPTDIR)/relaymail
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -m 0644 sendmail.example.toml $(DESTDIR)$(DOCDIR)/relaymail.example.toml
	[ -e $(DESTDIR)$(SYSCONFDIR)/cron.d/relaymail ] || \
		sed 's|/usr/sbin/relaymail|$(SBINDIR)/relaymail|g' packaging/cron/relaymail \
			>$(DESTDIR)$(SYSCONFDIR)/cron.d/relaymail
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/cron.d/relaymail
	[ -e $(DESTDIR)$(SYSCONFDIR)/logrotate.d/relaymail ] || \
		$(INSTALL) -m 0644 packaging/logrotate/relaymail $(DESTDIR)$(SYSCONFDIR)/logrotate.d/relaymail
	$(INSTALL) -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/relaymail $(DESTDIR)$(SYSCONFDIR)/relaymail/conf.d
	[ -e $(DESTDIR)$(SYSCONFDIR)/relaymail/relaymail.toml ] || \
		$(INSTALL) -m 0640 packaging/relaymail.toml $(DESTDIR)$(SYSCONFDIR)/relaymail/relaymail.toml
	[ -e $(DESTDIR)$(SYSCONFDIR)/relaymail/credentials ] || \
		$(INSTALL) -m 0640 /dev/null $(DESTDIR)$(SYSCONFDIR)/relaymail/credentials
	$(INSTALL) -d -m 2770 $(DESTDIR)/var/spool/relaymail $(DESTDIR)/var/spool/relaymail/tmp \
		$(DESTDIR)/var/spool/relaymail/queue
	$(INSTALL) -d -m 0750 $(DESTDIR)/var/log/relaymail $(DESTDIR)/var/lib/relaymail
ifeq ($(OWNERSHIP),yes)
	$(MAKE) --no-print-directory install-accounts
	chown root:relaymail $(SBINDIR)/relaymail $(SBINDIR)/relaymail-sendmail
	chmod 2755 $(SBINDIR)/relaymail $(SBINDIR)/relaymail-sendmail
	chown root:relaymail $(SYSCONFDIR)/relaymail $(SYSCONFDIR)/relaymail/conf.d \
		$(SYSCONFDIR)/relaymail/relaymail.toml $(SYSCONFDIR)/relaymail/credentials \
		/var/spool/relaymail /var/spool/relaymail/tmp /var/spool/relaymail/queue /var/log/relaymail
	chmod 2770 /var/spool/relaymail /var/spool/relaymail/tmp /var/spool/relaymail/queue
	[ -e /var/log/relaymail/relaymail.jsonl ] || \
		$(INSTALL) -m 0660 -o root -g relaymail /dev/null /var/log/relaymail/relaymail.jsonl
	chown relaymail-sink:relaymail-sink /var/lib/relaymail
	@echo "relaymail installed. Next: edit $(SYSCONFDIR)/relaymail/relaymail.toml, then"
	@echo "  relaymail config check && relaymail doctor"
	@echo "  systemctl daemon-reload && systemctl enable --now relaymail-flush.timer"
endif

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/relaymail $(DESTDIR)$(SBINDIR)/relaymail-sendmail \
		$(DESTDIR)$(MANDIR)/man8/relaymail*.8.gz \
		$(DESTDIR)$(MANDIR)/man5/relaymail.toml.5.gz \
		$(DESTDIR)$(BASHCOMPDIR)/relaymail $(DESTDIR)$(ZSHCOMPDIR)/_relaymail \
		$(DESTDIR)$(FISHCOMPDIR)/relaymail.fish $(DESTDIR)$(LOGWATCHCONFDIR)/relaymail.conf \
		$(DESTDIR)$(LOGWATCHSCRIPTDIR)/relaymail $(DESTDIR)$(SYSUSERSDIR)/relaymail.conf \
		$(DESTDIR)$(SYSCONFDIR)/cron.d/relaymail \
		$(DESTDIR)$(UNITDIR)/relaymail-flush.service $(DESTDIR)$(UNITDIR)/relaymail-flush.timer \
		$(DESTDIR)$(UNITDIR)/relaymail-sink.service
	rm -rf $(DESTDIR)$(DOCDIR)
	for link in $(SBINDIR)/sendmail $(BINDIR)/mailq $(BINDIR)/newaliases $(LIB_SENDMAIL) \
		$(MANDIR)/man8/sendmail.8.gz $(MANDIR)/man1/mailq.1.gz $(MANDIR)/man1/newaliases.1.gz; do \
		case "$$(readlink $(DESTDIR)$$link 2>/dev/null)" in \
		*relaymail*) rm -f $(DESTDIR)$$link ;; esac; \
	done
	@echo "Kept: $(SYSCONFDIR)/relaymail, /var/spool/relaymail (queued mail), /var/log/relaymail,"
	@echo "/var/lib/relaymail and the relaymail and relaymail-sink accounts."

check:
	scripts/test

clean:
	$(CARGO) clean
