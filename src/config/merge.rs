//! Reading the configuration files and merging them into one. Each file
//! is checked alone first, so that an error names the file and the line
//! that has it; later files (`conf.d/*.toml` in name order) win key by key.

use std::fs;

use super::discover::system_files;
use super::error;
use super::resolve::resolve;
use super::schema::RawConfig;
use super::{Config, Error, Source};

/// Reads, merges and resolves the configuration from `source`.
pub fn load(source: &Source) -> Result<Config, Error> {
    let files = match source {
        Source::Explicit(p) | Source::User(p) => vec![p.clone()],
        Source::System(dir) => system_files(dir)?,
        Source::Defaults => Vec::new(),
    };
    let mut merged = toml::Table::new();
    for file in &files {
        let text = fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        // Validate each file alone so errors point into the file that has them.
        toml::from_str::<RawConfig>(&text).map_err(|e| error::syntax(file, &text, &e))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| error::syntax(file, &text, &e))?;
        merge(&mut merged, table);
    }
    let raw: RawConfig = merged
        .try_into()
        .map_err(|e: toml::de::Error| Error::Invalid {
            path: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            key: "(merged)",
            message: e.message().to_string(),
        })?;
    resolve(raw, source.mode(), files)
}

/// Later files win key by key; tables merge recursively.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{tempdir, write};
    use crate::config::{Mode, SYSTEM_SPOOL};
    use std::path::PathBuf;

    #[test]
    fn conf_d_merges_in_name_order() {
        let dir = tempdir();
        write(
            dir.path(),
            "relaymail.toml",
            "hostname = \"a.example.com\"\n[smarthost]\nhost = \"one\"\nport = 25\n",
        );
        write(
            dir.path(),
            "conf.d/20-b.toml",
            "[smarthost]\nhost = \"three\"\n",
        );
        write(
            dir.path(),
            "conf.d/10-a.toml",
            "[smarthost]\nhost = \"two\"\nusername = \"u\"\n",
        );
        write(dir.path(), "conf.d/ignored.txt", "garbage");
        let cfg = load(&Source::System(dir.path().to_path_buf())).expect("valid");
        let sh = cfg.smarthost.expect("smarthost");
        assert_eq!(sh.host, "three");
        assert_eq!(sh.port, 25);
        assert_eq!(sh.username.as_deref(), Some("u"));
        assert_eq!(cfg.mode, Mode::System);
        assert_eq!(cfg.spool_dir, PathBuf::from(SYSTEM_SPOOL));
        assert_eq!(cfg.files.len(), 3);
    }

    #[test]
    fn error_in_fragment_names_fragment_line_and_key() {
        let dir = tempdir();
        write(
            dir.path(),
            "relaymail.toml",
            "hostname = \"a.example.com\"\n",
        );
        write(
            dir.path(),
            "conf.d/10.toml",
            "# comment\n[smarthost]\nhost = \"x\"\nusr = \"me\"\n",
        );
        let err = load(&Source::System(dir.path().to_path_buf())).expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("10.toml:4:1:"), "{text}");
        assert!(text.contains("usr"), "{text}");
        assert!(text.contains("[smarthost]"), "{text}");
        assert!(text.contains("did you mean \"username\""), "{text}");
    }

    #[test]
    fn old_tls_versions_are_refused_with_a_reason() {
        let dir = tempdir();
        let f = write(
            dir.path(),
            "c.toml",
            "[smarthost]\nhost = \"x\"\ntls_min_version = \"1.0\"\n",
        );
        let text = load(&Source::Explicit(f)).expect_err("1.0").to_string();
        assert!(text.contains(":3:"), "{text}");
        assert!(text.contains("only TLS 1.2 and 1.3"), "{text}");
    }
}
