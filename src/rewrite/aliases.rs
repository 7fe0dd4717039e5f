//! The classic `/etc/aliases` format: `name: target, target`, `#`
//! comments, continuation lines starting with whitespace. Targets that
//! deliver locally (`|command`, `/file`, `:include:`) cannot be honoured by
//! a send-only relay; they are reported, never executed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub targets: Vec<String>,
    /// "file:line" where it was defined, for messages.
    pub origin: String,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    entries: HashMap<String, Entry>,
}

/// Something wrong in the file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub message: String,
    /// False for warnings (a skipped local-delivery target, a redefinition).
    pub fatal: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl Table {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(&name.to_ascii_lowercase())
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, name: &str, entry: Entry) {
        self.entries.insert(name.to_ascii_lowercase(), entry);
    }
}

pub fn read(path: &Path) -> Result<(Table, Vec<Problem>), (PathBuf, std::io::Error)> {
    // Bytes, not UTF-8: one stray Latin-1 comment must not stop all mail.
    let bytes = std::fs::read(path).map_err(|e| (path.to_path_buf(), e))?;
    Ok(parse(
        &String::from_utf8_lossy(&bytes),
        &path.display().to_string(),
    ))
}

/// Parses aliases text. Later definitions of a name replace earlier ones
/// (reported as a problem, as newaliases does).
pub fn parse(text: &str, file: &str) -> (Table, Vec<Problem>) {
    let mut table = Table::default();
    let mut problems = Vec::new();
    // Join continuation lines, remembering the line each entry began on.
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match logical.last_mut() {
                Some((_, entry)) => {
                    entry.push(' ');
                    entry.push_str(line.trim());
                }
                None => problems.push(Problem {
                    origin: format!("{file}:{line_no}"),
                    message: "continuation line without an alias before it".into(),
                    fatal: true,
                }),
            }
            continue;
        }
        logical.push((line_no, line.trim().to_string()));
    }
    for (line_no, entry) in logical {
        let origin = format!("{file}:{line_no}");
        let Some((name, rest)) = entry.split_once(':') else {
            problems.push(Problem {
                origin,
                message: format!("expected \"name: address, ...\", found {entry:?}"),
                fatal: true,
            });
            continue;
        };
        let name = name.trim().trim_matches('"').to_ascii_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) {
            problems.push(Problem {
                origin,
                message: format!("invalid alias name {name:?}"),
                fatal: true,
            });
            continue;
        }
        let mut targets = Vec::new();
        for target in split_targets(rest) {
            if target.starts_with('|') || target.starts_with('/') || target.starts_with(":include:")
            {
                problems.push(Problem {
                    origin: origin.clone(),
                    message: format!(
                        "alias {name}: target {target:?} delivers locally (program, file or include), which relaymail cannot do; it is skipped — point the alias at a mail address"
                    ),
                    fatal: false,
                });
                continue;
            }
            targets.push(target);
        }
        if table.get(&name).is_some() {
            problems.push(Problem {
                origin: origin.clone(),
                message: format!("alias {name} is defined again; this later definition wins"),
                fatal: false,
            });
        }
        table.insert(&name, Entry { targets, origin });
    }
    (table, problems)
}

/// Splits on commas outside double quotes; strips quotes around a target.
fn split_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|t| {
            let t = t.trim();
            let unquoted = t.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
            match unquoted {
                Some(inner) if inner.starts_with(['|', '/']) => inner.to_string(),
                _ => t.to_string(),
            }
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_file() {
        let text = "# See man 5 aliases\nmailer-daemon: postmaster\npostmaster: root\nroot: admin@example.com,\n  ops@example.com\nnobody: root\nbackup: \"|/usr/bin/backup\", root\n\nweb:   a@x.org , \"b@x.org\"\n";
        let (table, problems) = parse(text, "/etc/aliases");
        assert_eq!(table.len(), 6);
        assert_eq!(
            table.get("ROOT").map(|e| e.targets.clone()),
            Some(vec![
                "admin@example.com".to_string(),
                "ops@example.com".to_string()
            ])
        );
        assert_eq!(
            table.get("root").map(|e| e.origin.as_str()),
            Some("/etc/aliases:4")
        );
        assert_eq!(
            table.get("backup").map(|e| e.targets.clone()),
            Some(vec!["root".to_string()])
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems.iter().any(|p| p.origin == "/etc/aliases:7"));
    }

    #[test]
    fn malformed_lines_are_problems() {
        let (_, problems) = parse("  orphan continuation\nno colon here\n", "f");
        assert_eq!(problems.len(), 2);
        assert_eq!(problems.first().map(|p| p.origin.as_str()), Some("f:1"));
    }
}
