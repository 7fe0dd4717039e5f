//! The OS keyring, for user mode: the kernel's keyutils store (always
//! there; reachable from cron and on headless hosts through the user's
//! persistent keyring) and the Secret Service (GNOME Keyring, KWallet,
//! KeePassXC) where a session bus exists. A secret is looked up in that
//! order and stored in every store that is reachable.

use crate::config::KeyringEntry;

use super::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Keyutils,
    SecretService,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Keyutils => "keyutils",
            Store::SecretService => "secret-service",
        }
    }

    /// What an admin should know about where the secret lives.
    pub fn describe(self) -> &'static str {
        match self {
            Store::Keyutils => "the kernel keyutils store (your persistent keyring: it outlives logouts and is renewed on each use, but not a reboot or /proc/sys/kernel/keys/persistent_keyring_expiry without use)",
            Store::SecretService => "the Secret Service of your desktop session (GNOME Keyring, KWallet or KeePassXC)",
        }
    }
}

/// Whether the Secret Service can be asked at all: only with a session
/// bus (never an X11 autolaunch from cron).
fn session_bus() -> Result<(), String> {
    match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into()),
    }
}

fn entry(store: Store, key: &KeyringEntry) -> Result<keyring::Entry, String> {
    let credential: Box<keyring::Credential> = match store {
        Store::Keyutils => Box::new(keyutils(key)?),
        Store::SecretService => {
            session_bus()?;
            Box::new(
                keyring::secret_service::SsCredential::new_with_target(
                    None,
                    &key.service,
                    &key.account,
                )
                .map_err(|e| e.to_string())?,
            )
        }
    };
    Ok(keyring::Entry::new_with_credential(credential))
}

/// A keyutils credential anchored in this process's own keyring, with
/// the user's persistent keyring linked into it. The keyring crate's own
/// constructor anchors it in the session keyring, which a process started
/// without pam_keyinit (cron on Debian, a service, a plain `su`) does not
/// possess: there it could neither store nor find the secret. The
/// description is the crate's, so entries stay interchangeable.
fn keyutils(key: &KeyringEntry) -> Result<keyring::keyutils::KeyutilsCredential, String> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let process = KeyRing::from_special_id(KeyRingIdentifier::Process, true)
        .map_err(|e| format!("no process keyring: {e:?}"))?;
    let persistent = KeyRing::get_persistent(KeyRingIdentifier::Process).map_err(|e| {
        format!("no persistent keyring (kernel without CONFIG_PERSISTENT_KEYRINGS?): {e:?}")
    })?;
    Ok(keyring::keyutils::KeyutilsCredential {
        session: process,
        persistent: Some(persistent),
        description: format!("keyring-rs:{}@{}", key.account, key.service),
    })
}

const STORES: [Store; 2] = [Store::Keyutils, Store::SecretService];

/// What one store said about an entry.
pub struct Found {
    pub store: Store,
    /// Ok(true): held there; Ok(false): not there; Err: the store could
    /// not be asked, and why.
    pub held: Result<bool, String>,
}

/// The secret from the first store that holds it.
pub fn get(key: &KeyringEntry) -> Result<(Secret, Store), Vec<Found>> {
    let mut asked = Vec::new();
    for store in STORES {
        match lookup(store, key) {
            Ok(Some(text)) => return Ok((Secret::new(text), store)),
            Ok(None) => asked.push(Found {
                store,
                held: Ok(false),
            }),
            Err(e) => asked.push(Found {
                store,
                held: Err(e),
            }),
        }
    }
    Err(asked)
}

/// Where the entry is held, store by store (never the secret).
pub fn find(key: &KeyringEntry) -> Vec<Found> {
    STORES
        .iter()
        .map(|&store| Found {
            store,
            held: lookup(store, key).map(|found| found.is_some()),
        })
        .collect()
}

fn lookup(store: Store, key: &KeyringEntry) -> Result<Option<String>, String> {
    match entry(store, key)?.get_password() {
        Ok(text) if !text.is_empty() => Ok(Some(text)),
        Ok(_) | Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Stores the secret in every reachable store; the stores that took it,
/// and why the others did not.
pub fn set(key: &KeyringEntry, secret: &Secret) -> (Vec<Store>, Vec<(Store, String)>) {
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    for store in STORES {
        match entry(store, key)
            .and_then(|e| e.set_password(secret.expose()).map_err(|e| e.to_string()))
        {
            Ok(()) => stored.push(store),
            Err(e) => failed.push((store, e)),
        }
    }
    (stored, failed)
}

/// Removes the entry from every store that holds it.
pub fn clear(key: &KeyringEntry) -> Vec<Found> {
    STORES
        .iter()
        .map(|&store| {
            let held = entry(store, key).and_then(|e| match e.delete_credential() {
                Ok(()) => Ok(true),
                Err(keyring::Error::NoEntry) => Ok(false),
                Err(e) => Err(e.to_string()),
            });
            Found { store, held }
        })
        .collect()
}

/// One line for a lookup that found nothing: what each store said.
pub fn explain(asked: &[Found]) -> String {
    asked
        .iter()
        .map(|f| match &f.held {
            Ok(true) => format!("{}: held", f.store.name()),
            Ok(false) => format!("{}: not there", f.store.name()),
            Err(e) => format!("{}: {e}", f.store.name()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
