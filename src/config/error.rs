//! Configuration errors: always the file, the position when there is one,
//! the key, what is allowed, and what to do. All exit 78 (EX_CONFIG).

use std::fmt;
use std::path::PathBuf;

use crate::sysexits::{ExitStatus, Sysexit};

#[derive(Debug)]
pub enum Error {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        section: Option<String>,
        message: String,
        suggestion: Option<String>,
    },
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())?;
                match source.kind() {
                    std::io::ErrorKind::NotFound => write!(
                        f,
                        "; create it (relaymail.toml(5) describes every key) or point -C / RELAYMAIL_CONFIG at an existing file"
                    ),
                    std::io::ErrorKind::PermissionDenied => write!(
                        f,
                        "; make it readable by the relaymail group (chgrp relaymail, chmod 640) or run as its owner"
                    ),
                    _ => Ok(()),
                }
            }
            Error::Syntax {
                path,
                line,
                column,
                section,
                message,
                suggestion,
            } => {
                write!(f, "{}:{line}:{column}: {message}", path.display())?;
                if let Some(section) = section {
                    write!(f, " (in [{section}])")?;
                }
                if let Some(s) = suggestion {
                    write!(f, "; did you mean \"{s}\"?")?;
                }
                write!(f, "; relaymail.toml(5) describes every key")
            }
            Error::Invalid { path, key, message } => write!(f, "{path}: {key}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ExitStatus for Error {
    fn sysexit(&self) -> Sysexit {
        Sysexit::Config
    }
}

/// Builds a positioned error from a TOML parse/type error.
pub fn syntax(path: &std::path::Path, text: &str, err: &toml::de::Error) -> Error {
    let offset = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    let message = err.message().trim().replace('\n', " ");
    Error::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        section: section_at(before),
        suggestion: suggest(&message),
        message,
    }
}

/// The `[table]` header in force at the end of `before`.
fn section_at(before: &str) -> Option<String> {
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?;
        let end = inner.find(']')?;
        Some(inner.get(..end)?.trim_matches(['[', ']', ' ']).to_string())
    })
}

/// For "unknown field `usr`, expected one of `host`, ...", the closest
/// allowed name.
fn suggest(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typed, rest) = rest.split_once('`')?;
    let allowed = rest.split('`').skip(1).step_by(2);
    allowed
        .map(|name| (distance(typed, name), name))
        .filter(|(d, name)| *d <= 2 || is_subsequence(typed, name))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.to_string())
}

/// `usr` in `username`: an abbreviation keeps the letters in order.
fn is_subsequence(short: &str, long: &str) -> bool {
    let mut letters = long.chars();
    short.len() >= 2 && short.chars().all(|c| letters.any(|l| l == c))
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let value = (prev + usize::from(ca != *cb)).min(above + 1).min(left + 1);
            prev = above;
            if let Some(slot) = row.get_mut(j + 1) {
                *slot = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        let msg =
            "unknown field `usr`, expected one of `host`, `port`, `username`, `password_file`";
        assert_eq!(suggest(msg).as_deref(), Some("username"));
        let msg = "unknown field `hots`, expected one of `host`, `port`";
        assert_eq!(suggest(msg).as_deref(), Some("host"));
        assert_eq!(suggest("unknown field `zzzzzz`, expected `host`"), None);
    }

    #[test]
    fn finds_section() {
        assert_eq!(
            section_at("a = 1\n[smarthost]\nhost = 2\n").as_deref(),
            Some("smarthost")
        );
        assert_eq!(section_at("a = 1\n"), None);
        assert_eq!(
            section_at("[[sink.listener]]\n").as_deref(),
            Some("sink.listener")
        );
    }
}
