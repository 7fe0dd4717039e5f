//! Where the long-lived OAuth2 secrets are: the application's client
//! secret (`client_secret_file`, or the keyring in user mode) and the
//! refresh token (the OS keyring in user mode, through the credentials
//! machinery; the token cache file, root:relaymail 0640, in system mode).

use super::cache::{Cache, Contents};
use super::{Error, Kind};
use crate::config::oauth2::ClientSecret;
use crate::config::{Mode, OAuth2};
use crate::creds::{keyring, Secret};

/// The client secret, when the application has one.
pub fn client_secret(settings: &OAuth2, mode: Mode) -> Result<Option<Secret>, Error> {
    match &settings.client_secret {
        ClientSecret::Absent => Ok(None),
        ClientSecret::File(path) => {
            crate::creds::check_private(path, "client_secret_file", mode)
                .map_err(|f| Error::new(Kind::Storage, f.message))?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(
                    Kind::Storage,
                    format!("cannot read client_secret_file {}: {e}", path.display()),
                )
            })?;
            let first = text.lines().next().unwrap_or("").trim();
            if first.is_empty() {
                return Err(Error::new(
                    Kind::Config,
                    format!("client_secret_file {} is empty", path.display()),
                ));
            }
            Ok(Some(Secret::new(first.to_string())))
        }
        ClientSecret::Keyring(entry) => match keyring::get(entry) {
            Ok((secret, _)) => Ok(Some(secret)),
            Err(asked) => Err(Error::new(
                Kind::Storage,
                format!(
                    "no client secret for {} in the OS keyring ({}); store it with: relaymail credentials set --account {}",
                    entry.account,
                    keyring::explain(&asked),
                    entry.account
                ),
            )),
        },
    }
}

/// Where this configuration keeps its refresh token.
pub enum RefreshStore<'a> {
    Keyring(&'a crate::config::KeyringEntry),
    CacheFile,
}

pub fn refresh_store(settings: &OAuth2) -> RefreshStore<'_> {
    match &settings.refresh_keyring {
        Some(entry) => RefreshStore::Keyring(entry),
        None => RefreshStore::CacheFile,
    }
}

/// The refresh token, or why there is none (with the login to run).
pub fn refresh_token(settings: &OAuth2, cached: Option<&Contents>) -> Result<Secret, Error> {
    let login = "run `relaymail oauth2 login` once";
    match refresh_store(settings) {
        RefreshStore::Keyring(entry) => match keyring::get(entry) {
            Ok((secret, _)) => Ok(secret),
            Err(asked) => Err(Error::new(
                Kind::LoginNeeded,
                format!(
                    "no OAuth2 refresh token for {} in the OS keyring ({}); {login} (a kernel keyring entry does not survive a reboot)",
                    entry.account,
                    keyring::explain(&asked)
                ),
            )),
        },
        RefreshStore::CacheFile => cached
            .and_then(|c| c.refresh_token.clone())
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                Error::new(
                    Kind::LoginNeeded,
                    format!(
                        "no OAuth2 refresh token in {}; {login} as root",
                        settings.token_cache.display()
                    ),
                )
            }),
    }
}

/// Stores a new (or rotated) refresh token. In system mode it goes into
/// `contents`, which the caller writes; in user mode into the keyring,
/// now. Returns where it went, for messages.
pub fn save_refresh(
    settings: &OAuth2,
    token: &Secret,
    contents: &mut Contents,
) -> Result<String, Error> {
    contents.refresh_saved_at = Some(super::now());
    match refresh_store(settings) {
        RefreshStore::Keyring(entry) => {
            contents.refresh_token = None;
            let (stored, failed) = keyring::set(entry, token);
            if stored.is_empty() {
                let why = failed
                    .iter()
                    .map(|(s, e)| format!("{}: {e}", s.name()))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Error::new(
                    Kind::Storage,
                    format!(
                        "no keyring took the OAuth2 refresh token for {} ({why})",
                        entry.account
                    ),
                ));
            }
            Ok(stored
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(" and "))
        }
        RefreshStore::CacheFile => {
            contents.refresh_token = Some(token.expose().to_string());
            Ok(settings.token_cache.display().to_string())
        }
    }
}

/// Removes the refresh token from the keyring (user mode; the cache file
/// is removed by the caller). Returns the stores that held it.
pub fn forget_refresh(settings: &OAuth2) -> Vec<&'static str> {
    match refresh_store(settings) {
        RefreshStore::Keyring(entry) => keyring::clear(entry)
            .into_iter()
            .filter(|f| f.held == Ok(true))
            .map(|f| f.store.name())
            .collect(),
        RefreshStore::CacheFile => Vec::new(),
    }
}

/// Whether a refresh token is held, and where (never the token).
pub fn describe_refresh(settings: &OAuth2, cached: Option<&Contents>) -> Result<String, String> {
    match refresh_store(settings) {
        RefreshStore::Keyring(entry) => {
            let found = keyring::find(entry);
            let held: Vec<&str> = found
                .iter()
                .filter(|f| f.held == Ok(true))
                .map(|f| f.store.name())
                .collect();
            if held.is_empty() {
                Err(format!(
                    "no refresh token for {} in the OS keyring ({})",
                    entry.account,
                    keyring::explain(&found)
                ))
            } else {
                Ok(format!(
                    "a refresh token for {} is held in {} (service {})",
                    entry.account,
                    held.join(" and "),
                    entry.service
                ))
            }
        }
        RefreshStore::CacheFile => match cached.and_then(|c| c.refresh_token.as_ref()) {
            Some(_) => Ok(format!(
                "a refresh token is held in {}",
                settings.token_cache.display()
            )),
            None => Err(format!(
                "no refresh token in {}",
                settings.token_cache.display()
            )),
        },
    }
}

/// The cache file for this configuration.
pub fn cache(settings: &OAuth2, mode: Mode) -> Cache {
    Cache::new(&settings.token_cache, mode)
}
