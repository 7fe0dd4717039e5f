//! OAuth2 access tokens for SMTP AUTH XOAUTH2 and OAUTHBEARER (issue 14):
//! relaymail gets them from the provider's token endpoint itself, keeps
//! the current one cached, refreshes it ahead of expiry, and saves a
//! rotated refresh token, so that cron mail goes out through Microsoft
//! 365 or Gmail unattended.
//!
//! One file per job: `http` (the HTTPS transport), `token` (the grants
//! and what their errors mean), `device` (the sign-in behind `relaymail
//! oauth2 login`), `cache` (the token file and the refresh lock),
//! `store` (client secret and refresh token: keyring or state file),
//! `replies` (what the providers' SMTP refusals mean). The settings come
//! resolved from `config::oauth2`.
//!
//! This module sits below `relay`: relay asks `Tokens` for a token, and
//! for a new one once when the relay refused it as expired. Nothing here
//! ever puts a token or secret into an error, a note or a panic.

pub mod cache;
pub mod device;
pub mod http;
pub mod replies;
pub mod store;
pub mod token;

use std::sync::{Mutex, OnceLock};

use crate::config::{Config, Mode, OAuth2, OAuth2Flow};
use crate::creds::Secret;
use crate::sysexits::{Failure, Sysexit};

use cache::{Contents, LOCK_WAIT};
use token::{Grant, Issued};

/// What went wrong, sorted by what an admin (or the queue) does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The endpoint could not be reached, or had trouble: retry later.
    Network,
    /// The provider refused (a wrong client, scope, permission).
    Provider,
    /// No refresh token, or the provider no longer accepts it: an admin
    /// must run `relaymail oauth2 login`.
    LoginNeeded,
    /// A setting is wrong.
    Config,
    /// The token cache or keyring could not be read or written.
    Storage,
    /// Another process held the refresh lock too long.
    Busy,
}

/// A failure to get a token: a sentence naming the endpoint, the
/// provider's error code when there is one, and what to do. Never holds
/// a secret.
#[derive(Clone, Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// The provider's OAuth2 error code (`invalid_grant`, ...).
    pub code: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            code: None,
        }
    }

    fn with_code(mut self, code: &str) -> Error {
        self.code = Some(code.to_string());
        self
    }

    /// For the faces that report it themselves (`oauth2 login/status`).
    pub fn sysexit(&self) -> Sysexit {
        match self.kind {
            Kind::Network | Kind::Busy | Kind::LoginNeeded => Sysexit::TempFail,
            Kind::Provider => Sysexit::Unavailable,
            Kind::Config => Sysexit::Config,
            Kind::Storage => Sysexit::CantCreate,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(e.sysexit(), e.message)
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Text from the network made safe for one log line: control characters
/// as spaces, at most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Refreshed this long before expiry at most (and at half its life for
/// a short-lived token), so that no session starts with a token about to
/// lapse.
const REFRESH_AHEAD: i64 = 300;

/// Whether a token obtained at `obtained_at` and lapsing at `expires_at`
/// should be replaced now.
pub fn is_due(obtained_at: Option<i64>, expires_at: i64, now: i64) -> bool {
    let lifetime = obtained_at
        .map(|o| expires_at - o)
        .unwrap_or(REFRESH_AHEAD * 2);
    let ahead = REFRESH_AHEAD.min(lifetime / 2).max(0);
    expires_at - now <= ahead
}

/// How long the refresh token may go unused before the periodic queue
/// run renews it (providers retire unused ones: Microsoft after 90 days).
pub const KEEP_ALIVE: i64 = 7 * 86_400;

/// An access token for one AUTH.
pub struct Token {
    pub secret: Secret,
    pub expires_at: i64,
    /// When the endpoint issued it, when known.
    pub obtained_at: Option<i64>,
    /// Obtained from the endpoint by this call (not from a cache).
    pub fresh: bool,
}

impl Token {
    /// Another copy of the token (its own `Secret`, wiped when dropped),
    /// as it stands for a later caller: no longer fresh.
    fn again(&self) -> Token {
        Token {
            secret: Secret::new(self.secret.expose().to_string()),
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            fresh: false,
        }
    }

    fn is_due(&self) -> bool {
        is_due(self.obtained_at, self.expires_at, now())
    }
}

/// The OAuth2 client of one configuration, shared by a run's sessions.
pub struct Tokens {
    settings: OAuth2,
    mode: Mode,
    username: String,
    http: OnceLock<Result<http::Http, Error>>,
    /// The last token handed out in this process.
    held: Mutex<Option<Token>>,
    /// What happened at the token endpoint, for the log.
    notes: Mutex<Vec<String>>,
}

impl Tokens {
    /// None when the configuration has no `[smarthost.oauth2]`.
    pub fn new(config: &Config) -> Option<Tokens> {
        let host = config.smarthost.as_ref()?;
        Tokens::for_smarthost(host, config.mode)
    }

    pub fn for_smarthost(host: &crate::config::Smarthost, mode: Mode) -> Option<Tokens> {
        let settings = host.oauth2.clone()?;
        Some(Tokens {
            settings,
            mode,
            username: host.username.clone().unwrap_or_default(),
            http: OnceLock::new(),
            held: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
        })
    }

    pub fn settings(&self) -> &OAuth2 {
        &self.settings
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Lines for the log about refreshes done since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notes))
    }

    /// A token to AUTH with: the one held or cached while it is not due,
    /// else a new one from the endpoint.
    pub fn access_token(&self) -> Result<Token, Error> {
        let mut held = lock(&self.held);
        if let Some(token) = held.as_ref().filter(|t| !t.is_due()) {
            return Ok(token.again());
        }
        let cache = store::cache(&self.settings, self.mode);
        if let Some(token) = cache
            .read()?
            .filter(|c| self.owns(c))
            .and_then(|c| cached(&c))
            .filter(|t| !t.is_due())
        {
            *held = Some(token.again());
            return Ok(token);
        }
        let token = self.obtain(None)?;
        *held = Some(token.again());
        Ok(token)
    }

    /// The relay refused `rejected` as if it had expired: a new token
    /// (another process may already have one), to retry the AUTH once.
    pub fn after_rejection(&self, rejected: &Token) -> Result<Token, Error> {
        let mut held = lock(&self.held);
        *held = None;
        let token = self.obtain(Some(rejected.secret.expose()))?;
        *held = Some(token.again());
        Ok(token)
    }

    /// For the periodic queue run: when no token has been obtained for
    /// `KEEP_ALIVE`, one is now, so that a host that sends nothing for
    /// weeks keeps a refresh token the provider would otherwise retire
    /// for inactivity (Microsoft: 90 days), and a revoked one shows in the
    /// log before mail needs it. Ok(true) when a token was obtained; no
    /// sign-in yet is Ok(false).
    pub fn keep_alive(&self) -> Result<bool, Error> {
        if self.settings.flow != OAuth2Flow::RefreshToken {
            return Ok(false);
        }
        let cache = store::cache(&self.settings, self.mode);
        let Some(c) = cache.read()?.filter(|c| self.owns(c)) else {
            return Ok(false);
        };
        let last = c.obtained_at.max(c.refresh_saved_at).unwrap_or(0);
        if now() - last < KEEP_ALIVE {
            return Ok(false);
        }
        let mut held = lock(&self.held);
        let token = self.obtain(None)?;
        let obtained = token.fresh;
        *held = Some(token.again());
        Ok(obtained)
    }

    fn owns(&self, c: &Contents) -> bool {
        c.belongs_to(
            &self.settings.token_endpoint,
            &self.settings.client_id,
            &self.username,
        )
    }

    fn http(&self) -> Result<&http::Http, Error> {
        self.http
            .get_or_init(|| http::Http::new(&self.settings))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A new token, under the refresh lock: whoever waited for another
    /// process's refresh finds its token in the cache and uses that.
    fn obtain(&self, rejected: Option<&str>) -> Result<Token, Error> {
        let cache = store::cache(&self.settings, self.mode);
        let _lock = cache.lock(LOCK_WAIT)?;
        let current = cache.read()?.filter(|c| self.owns(c));
        // Renewed by another process while this one waited for the lock.
        if let Some(token) = current
            .as_ref()
            .and_then(cached)
            .filter(|t| !t.is_due() && Some(t.secret.expose()) != rejected)
        {
            return Ok(token);
        }
        let client_secret = store::client_secret(&self.settings, self.mode)?;
        let http = self.http()?;
        let refresh = match self.settings.flow {
            OAuth2Flow::ClientCredentials => None,
            OAuth2Flow::RefreshToken => {
                Some(store::refresh_token(&self.settings, current.as_ref())?)
            }
        };
        let grant = match &refresh {
            Some(token) => Grant::RefreshToken(token),
            None => Grant::ClientCredentials,
        };
        let issued = match token::request(http, &self.settings, client_secret.as_ref(), &grant)? {
            Ok(issued) => issued,
            Err(reply) => {
                let secrets: Vec<&Secret> = client_secret.iter().chain(refresh.iter()).collect();
                return Err(token::refusal(&self.settings, &grant, &reply, &secrets));
            }
        };
        let mut contents = current.unwrap_or_else(|| {
            Contents::new(
                &self.settings.token_endpoint,
                &self.settings.client_id,
                &self.username,
            )
        });
        let rotated = match (&issued.refresh_token, &refresh) {
            (Some(new), Some(old)) => new.expose() != old.expose(),
            (Some(_), None) => true,
            _ => false,
        };
        if rotated {
            if let Some(new) = &issued.refresh_token {
                // Saved before anything else: the provider may already
                // refuse the old one.
                if let Err(e) = store::save_refresh(&self.settings, new, &mut contents) {
                    self.note(format!(
                        "the provider rotated the refresh token but it could not be saved: {}; if later refreshes fail, run relaymail oauth2 login",
                        e.message
                    ));
                }
            }
        }
        let expires_at = issued.expires_at;
        fill(&mut contents, &issued);
        cache.write(&contents).map_err(|e| {
            let lost = if rotated && store::refresh_store(&self.settings).is_cache_file() {
                "; the new refresh token could not be kept: run relaymail oauth2 login as root once this is fixed"
            } else {
                ""
            };
            Error::new(e.kind, format!("{}{lost}", e.message))
        })?;
        self.note(format!(
            "{} access token obtained from {} ({}), valid {}s{}",
            match grant {
                Grant::ClientCredentials => "client_credentials:",
                _ => "refresh_token:",
            },
            http::host_of(&self.settings.token_endpoint),
            if rejected.is_some() {
                "the relay refused the previous one"
            } else {
                "the previous one was due"
            },
            expires_at - now(),
            if rotated {
                ", refresh token rotated"
            } else {
                ""
            }
        ));
        Ok(Token {
            secret: issued.access_token,
            expires_at,
            obtained_at: contents.obtained_at,
            fresh: true,
        })
    }

    fn note(&self, text: String) {
        lock(&self.notes).push(text);
    }
}

impl store::RefreshStore<'_> {
    fn is_cache_file(&self) -> bool {
        matches!(self, store::RefreshStore::CacheFile)
    }
}

/// The cached access token, if the file holds one.
fn cached(c: &Contents) -> Option<Token> {
    Some(Token {
        secret: Secret::new(c.access_token.clone()?),
        expires_at: c.expires_at?,
        obtained_at: c.obtained_at,
        fresh: false,
    })
}

/// The cache's access-token fields from an issued token.
fn fill(contents: &mut Contents, issued: &Issued) {
    contents.access_token = Some(issued.access_token.expose().to_string());
    contents.expires_at = Some(issued.expires_at);
    contents.obtained_at = Some(now());
    if issued.scope.is_some() {
        contents.scope = issued.scope.clone();
    }
}

/// Stores what a login obtained (refresh token and first access token).
/// Returns where the refresh token went.
pub fn save_login(
    settings: &OAuth2,
    mode: Mode,
    username: &str,
    issued: &Issued,
) -> Result<String, Error> {
    let refresh = issued.refresh_token.as_ref().ok_or_else(|| {
        let hint = match settings.provider {
            crate::config::Provider::Microsoft => "add offline_access to [smarthost.oauth2] scope",
            _ => "the provider must grant offline access for this client",
        };
        Error::new(
            Kind::Provider,
            format!("the sign-in worked but the provider issued no refresh token, so relaymail could not renew the access token unattended; {hint}"),
        )
    })?;
    let cache = store::cache(settings, mode);
    let _lock = cache.lock(LOCK_WAIT)?;
    let mut contents = Contents::new(&settings.token_endpoint, &settings.client_id, username);
    let place = store::save_refresh(settings, refresh, &mut contents)?;
    fill(&mut contents, issued);
    contents.login_at = Some(now());
    cache.write(&contents)?;
    Ok(place)
}

/// What `relaymail oauth2 status` shows (never a token).
pub struct Status {
    pub refresh: Result<String, String>,
    /// Expiry, when obtained, and scope of the cached access token.
    pub access: Option<(i64, Option<i64>, Option<String>)>,
    pub login_at: Option<i64>,
    pub refresh_saved_at: Option<i64>,
    /// The cache belongs to another client, account or endpoint.
    pub stale: bool,
}

pub fn status(settings: &OAuth2, mode: Mode, username: &str) -> Result<Status, Error> {
    let cache = store::cache(settings, mode);
    let read = cache.read()?;
    let stale = read
        .as_ref()
        .is_some_and(|c| !c.belongs_to(&settings.token_endpoint, &settings.client_id, username));
    let current = read.filter(|_| !stale);
    let refresh = match settings.flow {
        OAuth2Flow::ClientCredentials => Ok(
            "flow = \"client_credentials\": no refresh token; each token is requested with the client secret".to_string(),
        ),
        OAuth2Flow::RefreshToken => store::describe_refresh(settings, current.as_ref()),
    };
    Ok(Status {
        refresh,
        access: current.as_ref().and_then(|c| {
            c.access_token
                .as_ref()
                .and(c.expires_at)
                .map(|e| (e, c.obtained_at, c.scope.clone()))
        }),
        login_at: current.as_ref().and_then(|c| c.login_at),
        refresh_saved_at: current.as_ref().and_then(|c| c.refresh_saved_at),
        stale,
    })
}

/// Forgets the tokens (keyring entry and cache file). Returns what was
/// removed, for the face to report.
pub fn logout(settings: &OAuth2, mode: Mode) -> Result<Vec<String>, Error> {
    let cache = store::cache(settings, mode);
    let _lock = cache.lock(LOCK_WAIT)?;
    let mut removed: Vec<String> = store::forget_refresh(settings)
        .into_iter()
        .map(|s| format!("the refresh token from {s}"))
        .collect();
    if cache.remove()? {
        removed.push(format!(
            "the token cache {}",
            settings.token_cache.display()
        ));
    }
    Ok(removed)
}

/// Obtains a first token for a login that brought its own refresh token
/// (`--refresh-token-stdin`): it is redeemed once, proving it works.
pub fn redeem(settings: &OAuth2, mode: Mode, refresh: &Secret) -> Result<Issued, Error> {
    let http = http::Http::new(settings)?;
    let client_secret = store::client_secret(settings, mode)?;
    let grant = Grant::RefreshToken(refresh);
    match token::request(&http, settings, client_secret.as_ref(), &grant)? {
        Ok(mut issued) => {
            if issued.refresh_token.is_none() {
                issued.refresh_token = Some(Secret::new(refresh.expose().to_string()));
            }
            Ok(issued)
        }
        Err(reply) => {
            let secrets: Vec<&Secret> = client_secret.iter().chain([refresh]).collect();
            Err(token::refusal(settings, &grant, &reply, &secrets))
        }
    }
}

/// A poisoned lock only means another session panicked; the data is a
/// token string or a list of notes, still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::is_due;

    #[test]
    fn tokens_are_refreshed_ahead_of_expiry() {
        // An hour-long token: five minutes ahead.
        assert!(!is_due(Some(0), 3600, 3299));
        assert!(is_due(Some(0), 3600, 3300));
        // A short-lived one at half its life; one that lapses at once is
        // due at once.
        assert!(!is_due(Some(0), 120, 59));
        assert!(is_due(Some(0), 120, 60));
        assert!(is_due(Some(0), 0, 0));
        assert!(is_due(None, 100, 100));
    }
}
