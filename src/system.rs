//! Facts about the host and the calling user: the mail name, the login name
//! and full name of a uid, and group lookups. Read-only; no policy.

use std::fs;
use std::path::Path;

/// Debian's `/etc/mailname`, else the host's fully qualified name: the
/// node name if it has a dot, else the first dotted name `/etc/hosts`
/// gives for it, else the bare node name.
pub fn mail_name() -> String {
    if let Some(name) = first_word(Path::new("/etc/mailname")) {
        return name;
    }
    fqdn()
}

pub fn fqdn() -> String {
    let node = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    if node.contains('.') {
        return node;
    }
    fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| dotted_name_for(&hosts, &node))
        .unwrap_or(node)
}

fn first_word(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let word = text.split_whitespace().next()?;
    (!word.is_empty()).then(|| word.to_string())
}

/// In an `/etc/hosts` text, the first dotted name on a line that also names `node`.
fn dotted_name_for(hosts: &str, node: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        let mentions = names
            .iter()
            .any(|n| *n == node || n.split('.').next() == Some(node));
        mentions
            .then(|| {
                names
                    .iter()
                    .find(|n| n.contains('.'))
                    .map(|n| n.to_string())
            })
            .flatten()
    })
}

/// The submitting user as the system knows them (real uid, through NSS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalUser {
    pub uid: u32,
    pub name: String,
    pub full_name: Option<String>,
}

pub fn calling_user() -> LocalUser {
    let uid = nix::unistd::getuid();
    let entry = nix::unistd::User::from_uid(uid).ok().flatten();
    match entry {
        Some(user) => {
            let gecos = user.gecos.to_string_lossy();
            let full = gecos.split(',').next().unwrap_or("").trim().to_string();
            LocalUser {
                uid: uid.as_raw(),
                name: user.name,
                full_name: (!full.is_empty()).then_some(full),
            }
        }
        // A uid without a passwd entry (containers): still a distinct sender.
        None => LocalUser {
            uid: uid.as_raw(),
            name: format!("uid{}", uid.as_raw()),
            full_name: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lookup() {
        let hosts = "127.0.0.1 localhost\n127.0.1.1 web01.example.com web01 # me\n";
        assert_eq!(
            dotted_name_for(hosts, "web01").as_deref(),
            Some("web01.example.com")
        );
        assert_eq!(dotted_name_for(hosts, "db02"), None);
    }
}
