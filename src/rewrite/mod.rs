//! Turns what the caller typed into deliverable addresses: alias expansion
//! (the `[aliases]` table first, then the aliases file), bare local names
//! qualified with the default domain, the envelope sender of local users,
//! masquerading, and qualification of addresses in headers.

pub mod aliases;

use std::collections::HashSet;
use std::fmt;

use crate::config::Config;
use crate::message::{address, shape, Header};
use crate::sysexits::{ExitStatus, Sysexit};
use crate::system::LocalUser;

/// How deep nested aliases may go before we call it a loop.
const MAX_DEPTH: usize = 20;
/// Recipients of one message, after alias expansion.
pub const MAX_RECIPIENTS: usize = 10_000;

#[derive(Debug)]
pub enum Error {
    BadAddress {
        what: &'static str,
        invalid: address::Invalid,
    },
    BadAliasTarget {
        alias: String,
        origin: String,
        invalid: address::Invalid,
    },
    AliasLoop {
        chain: Vec<String>,
        origin: String,
    },
    TooManyRecipients,
    NoRecipients {
        reason: String,
    },
    AliasFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadAddress { what, invalid } => write!(f, "{what}: {invalid}"),
            Error::BadAliasTarget { alias, origin, invalid } => {
                write!(f, "alias {alias} (at {origin}): {invalid}; fix the aliases")
            }
            Error::AliasLoop { chain, origin } => write!(
                f,
                "alias loop {} (defined at {origin}); break the cycle in the aliases",
                chain.join(" -> ")
            ),
            Error::NoRecipients { reason } => write!(f, "{reason}"),
            Error::TooManyRecipients => write!(
                f,
                "more than {MAX_RECIPIENTS} recipients after alias expansion; split the message or check the aliases"
            ),
            Error::AliasFile { path, source } => write!(
                f,
                "cannot read aliases file {}: {source}; fix [rewrite] aliases_file or set it to \"\" to use none",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

impl ExitStatus for Error {
    fn sysexit(&self) -> Sysexit {
        match self {
            Error::BadAddress { .. } => Sysexit::Usage,
            Error::AliasLoop { .. } | Error::AliasFile { .. } | Error::BadAliasTarget { .. } => {
                Sysexit::Config
            }
            Error::NoRecipients { .. } => Sysexit::NoUser,
            Error::TooManyRecipients => Sysexit::Usage,
        }
    }
}

/// A recipient after rewriting, with what the caller typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub original: String,
}

pub struct Rewriter<'a> {
    config: &'a Config,
    file: aliases::Table,
    /// Problems found in the aliases file (reported by newaliases).
    pub problems: Vec<aliases::Problem>,
}

impl<'a> Rewriter<'a> {
    pub fn new(config: &'a Config) -> Result<Self, Error> {
        let (file, problems) = match &config.rewrite.aliases_file {
            Some(path) => {
                aliases::read(path).map_err(|(path, source)| Error::AliasFile { path, source })?
            }
            None => Default::default(),
        };
        Ok(Rewriter {
            config,
            file,
            problems,
        })
    }

    /// Every alias name known, `[aliases]` first.
    pub fn alias_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.config.aliases.keys().cloned().collect();
        for name in self.file.names() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// True for names of this host: bare, `@localhost`, `@<hostname>`.
    pub fn is_local(&self, addr: &str) -> bool {
        self.config.is_local_address(addr)
    }

    fn local_part(addr: &str) -> &str {
        addr.rsplit_once('@').map(|(l, _)| l).unwrap_or(addr)
    }

    /// `name` -> `name@default_domain`.
    pub fn qualify(&self, addr: &str) -> String {
        if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.config.rewrite.default_domain)
        }
    }

    /// Expands aliases and qualifies each recipient; duplicates removed.
    pub fn recipients(&self, typed: &[String], expand: bool) -> Result<Vec<Recipient>, Error> {
        let mut out: Vec<Recipient> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        // Names already expanded in this call: expanding one again adds
        // nothing (duplicates are dropped), and skipping it keeps a wide
        // alias graph linear instead of exponential.
        let mut expanded: HashSet<String> = HashSet::new();
        for original in typed {
            let addr = address::check(original).map_err(|invalid| Error::BadAddress {
                what: "recipient",
                invalid,
            })?;
            let mut found = Vec::new();
            if expand {
                self.expand(&addr, &mut Vec::new(), &mut expanded, &mut found)?;
            } else {
                found.push(self.qualify(&addr));
            }
            for address in found {
                if seen.insert(address.to_ascii_lowercase()) {
                    out.push(Recipient {
                        address,
                        original: original.clone(),
                    });
                }
            }
            if out.len() > MAX_RECIPIENTS {
                return Err(Error::TooManyRecipients);
            }
        }
        if out.is_empty() {
            return Err(Error::NoRecipients {
                reason: format!(
                    "no deliverable recipient: {} expanded to nothing through the aliases; give the alias an address",
                    typed.join(", ")
                ),
            });
        }
        Ok(out)
    }

    fn lookup(&self, name: &str) -> Option<(Vec<String>, String)> {
        let key = name.to_ascii_lowercase();
        if let Some(targets) = self.config.aliases.get(&key) {
            let origin = self
                .config
                .files
                .last()
                .map(|f| format!("{} [aliases]", f.display()))
                .unwrap_or_else(|| "[aliases]".into());
            return Some((targets.clone(), origin));
        }
        self.file
            .get(&key)
            .map(|e| (e.targets.clone(), e.origin.clone()))
    }

    fn expand(
        &self,
        addr: &str,
        chain: &mut Vec<String>,
        expanded: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), Error> {
        if !self.is_local(addr) {
            out.push(addr.to_string());
            return Ok(());
        }
        let name = Self::local_part(addr).to_ascii_lowercase();
        let Some((targets, origin)) = self.lookup(&name) else {
            out.push(self.qualify(Self::local_part(addr)));
            return Ok(());
        };
        if chain.contains(&name) || chain.len() >= MAX_DEPTH {
            let mut shown = chain.clone();
            shown.push(name);
            return Err(Error::AliasLoop {
                chain: shown,
                origin,
            });
        }
        if !expanded.insert(name.clone()) {
            return Ok(());
        }
        chain.push(name.clone());
        for target in targets {
            let target = address::check(&target).map_err(|invalid| Error::BadAliasTarget {
                alias: name.clone(),
                origin: origin.clone(),
                invalid,
            })?;
            // `root: root, admin@x` — a name naming itself stops there.
            if self.is_local(&target) && Self::local_part(&target).eq_ignore_ascii_case(&name) {
                out.push(self.qualify(Self::local_part(&target)));
            } else {
                self.expand(&target, chain, expanded, out)?;
                if out.len() > MAX_RECIPIENTS {
                    return Err(Error::TooManyRecipients);
                }
            }
        }
        chain.pop();
        Ok(())
    }

    /// The envelope sender: `-f` if given (validated, qualified,
    /// masqueraded), else the calling user at this host's mail domain.
    /// An empty `-f ""` or `-f "<>"` is the null sender (bounces).
    pub fn sender(&self, typed: Option<&str>, user: &LocalUser) -> Result<String, Error> {
        let addr = match typed.map(str::trim) {
            Some("") | Some("<>") => return Ok(String::new()),
            Some(given) => address::check(given).map_err(|invalid| Error::BadAddress {
                what: "sender (-f)",
                invalid,
            })?,
            None => user.name.clone(),
        };
        Ok(self.masquerade(&addr))
    }

    /// A local sender address as the outside world should see it.
    pub fn masquerade(&self, addr: &str) -> String {
        if !self.is_local(addr) {
            return addr.to_string();
        }
        let local = Self::local_part(addr);
        let domain = self
            .config
            .rewrite
            .masquerade_domain
            .as_deref()
            .unwrap_or(&self.config.hostname);
        format!("{local}@{domain}")
    }

    /// `[rewrite] sender`: relays that accept only their account as sender
    /// get it as envelope sender (and in From: with `rewrite_from`, see
    /// `message::shape::force_from`). The null sender of a bounce stays
    /// null. Returns the envelope sender.
    pub fn enforce_sender(&self, header: &mut Header, sender: String) -> String {
        let Some(forced) = &self.config.rewrite.sender else {
            return sender;
        };
        if sender.is_empty() || sender.eq_ignore_ascii_case(forced) {
            return sender;
        }
        if self.config.rewrite.rewrite_from {
            shape::force_from(header, forced);
        }
        forced.clone()
    }

    /// Qualifies bare names in address headers so that relays checking
    /// header syntax accept them: senders are masqueraded, recipients get
    /// the default domain (aliases are an envelope matter).
    pub fn qualify_header(&self, header: &mut Header) {
        if !self.config.rewrite.qualify_headers {
            return;
        }
        header.rewrite_addresses(&["From", "Sender", "Reply-To", "Return-Path"], |a| {
            let new = self.masquerade(a);
            (new != a && !a.is_empty()).then_some(new)
        });
        header.rewrite_addresses(&["To", "Cc"], |a| {
            (!a.contains('@') && address::check(a).is_ok()).then(|| self.qualify(a))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Source};
    use std::path::PathBuf;

    fn config(extra: &str, aliases_file: Option<&str>) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tmp");
        let aliases_path = dir.path().join("aliases");
        if let Some(text) = aliases_file {
            std::fs::write(&aliases_path, text).expect("write");
        }
        let cfg_path = dir.path().join("c.toml");
        let aliases_line = if aliases_file.is_some() {
            format!("aliases_file = {:?}\n", aliases_path.display().to_string())
        } else {
            "aliases_file = \"\"\n".to_string()
        };
        std::fs::write(
            &cfg_path,
            format!("hostname = \"web01.example.com\"\nspool_dir = \"/nonexistent\"\n[rewrite]\ndefault_domain = \"example.com\"\n{aliases_line}{extra}"),
        )
        .expect("write");
        let cfg = load(&Source::Explicit(PathBuf::from(&cfg_path))).expect("config");
        (dir, cfg)
    }

    fn user() -> LocalUser {
        LocalUser {
            uid: 0,
            name: "root".into(),
            full_name: None,
        }
    }

    fn addrs(r: &[Recipient]) -> Vec<&str> {
        r.iter().map(|r| r.address.as_str()).collect()
    }

    #[test]
    fn nested_aliases_and_self_reference() {
        let (_d, cfg) = config(
            "",
            Some("postmaster: root\nroot: root, admin@example.org, ops\nops: a@x.org, b@x.org\n"),
        );
        let rw = Rewriter::new(&cfg).expect("rw");
        let r = rw.recipients(&["postmaster".into()], true).expect("ok");
        assert_eq!(
            addrs(&r),
            [
                "root@example.com",
                "admin@example.org",
                "a@x.org",
                "b@x.org"
            ]
        );
        assert!(r.iter().all(|x| x.original == "postmaster"));
        let r = rw
            .recipients(
                &["root@localhost".into(), "Root@web01.example.com".into()],
                true,
            )
            .expect("ok");
        assert_eq!(r.len(), 4, "duplicates removed");
    }

    #[test]
    fn toml_aliases_win_over_file() {
        let (_d, cfg) = config(
            "[aliases]\nroot = \"boss@example.org\"\n",
            Some("root: other@example.org\n"),
        );
        let rw = Rewriter::new(&cfg).expect("rw");
        assert_eq!(
            addrs(&rw.recipients(&["root".into()], true).expect("ok")),
            ["boss@example.org"]
        );
        assert_eq!(
            addrs(&rw.recipients(&["root".into()], false).expect("ok")),
            ["root@example.com"]
        );
    }

    #[test]
    fn loops_are_errors_naming_the_chain() {
        let (_d, cfg) = config("", Some("a: b\nb: c\nc: a\n"));
        let rw = Rewriter::new(&cfg).expect("rw");
        let err = rw.recipients(&["a".into()], true).expect_err("loop");
        assert_eq!(err.sysexit(), Sysexit::Config);
        assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
    }

    #[test]
    fn wide_alias_graphs_expand_in_linear_time() {
        // Six targets per level, 15 levels: 6^15 paths if re-expanded.
        let mut text = String::new();
        for level in 0..15 {
            let next: Vec<String> = (0..6).map(|_| format!("a{}", level + 1)).collect();
            text.push_str(&format!("a{level}: {}\n", next.join(", ")));
        }
        text.push_str("a15: end@example.org\n");
        let (_d, cfg) = config("", Some(&text));
        let rw = Rewriter::new(&cfg).expect("rw");
        assert_eq!(
            addrs(&rw.recipients(&["a0".into()], true).expect("ok")),
            ["end@example.org"]
        );
    }

    #[test]
    fn remote_addresses_are_never_aliased() {
        let (_d, cfg) = config("", Some("bob: x@example.org\n"));
        let rw = Rewriter::new(&cfg).expect("rw");
        assert_eq!(
            addrs(
                &rw.recipients(&["bob@example.com".into()], true)
                    .expect("ok")
            ),
            ["bob@example.com"]
        );
    }

    #[test]
    fn sender_derivation_and_masquerade() {
        let (_d, cfg) = config("masquerade_domain = \"example.com\"\n", None);
        let rw = Rewriter::new(&cfg).expect("rw");
        assert_eq!(rw.sender(None, &user()).expect("ok"), "root@example.com");
        assert_eq!(
            rw.sender(Some("cron@web01.example.com"), &user())
                .expect("ok"),
            "cron@example.com"
        );
        assert_eq!(
            rw.sender(Some("x@example.org"), &user()).expect("ok"),
            "x@example.org"
        );
        assert_eq!(rw.sender(Some("<>"), &user()).expect("ok"), "");
        assert!(rw.sender(Some("bad address@x"), &user()).is_err());
        let (_d, cfg) = config("", None);
        let rw = Rewriter::new(&cfg).expect("rw");
        assert_eq!(
            rw.sender(None, &user()).expect("ok"),
            "root@web01.example.com"
        );
    }
}
