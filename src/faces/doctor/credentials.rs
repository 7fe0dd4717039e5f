//! The secret AUTH would use, obtained as delivery obtains it: a password
//! (file, command or keyring), or with `[smarthost.oauth2]` the refresh
//! token and an access token. Each is reported usable, or why not; none is
//! ever shown.

use super::{Report, Status};
use crate::config::{Config, Mode, Smarthost};

/// `[smarthost.oauth2]`: the refresh token held, and an access token
/// obtained as delivery would (cached or refreshed). Never shown.
pub(super) fn oauth2(
    config: &Config,
    tokens: &crate::oauth2::Tokens,
    report: &mut Report,
) -> Option<crate::creds::Secret> {
    use crate::oauth2::Kind;
    let settings = tokens.settings();
    let login = if config.mode == Mode::System {
        "run relaymail oauth2 login as root"
    } else {
        "run relaymail oauth2 login"
    };
    match crate::oauth2::status(settings, config.mode, tokens.username()) {
        Ok(status) => match status.refresh {
            Ok(text) => report.add("oauth2", Status::Ok, text),
            Err(text) => report.fail("oauth2", text, login),
        },
        Err(e) => report.fail(
            "oauth2",
            e.message,
            "fix the token cache named above (its mode and owner)",
        ),
    }
    match tokens.access_token() {
        Ok(token) => {
            let left = token.expires_at - crate::oauth2::now();
            let how = if token.fresh {
                "obtained now from"
            } else {
                "cached, from"
            };
            report.add(
                "oauth2",
                Status::Ok,
                format!(
                    "an access token for {} ({how} {}) is valid for {} more minutes (not shown)",
                    tokens.username(),
                    crate::oauth2::http::host_of(&settings.token_endpoint),
                    left.max(0) / 60
                ),
            );
            Some(token.secret)
        }
        Err(e) => {
            let fix = match e.kind {
                Kind::LoginNeeded => login.to_string(),
                Kind::Network => "check DNS, the firewall or [smarthost.oauth2] proxy for the token endpoint; mail stays queued until it answers".into(),
                Kind::Config => "correct [smarthost.oauth2] as named above".into(),
                Kind::Storage => "fix the file or keyring named above".into(),
                Kind::Busy => "another relaymail process holds the token lock; try again".into(),
                Kind::Provider => "change the application or tenant setting named above".into(),
            };
            report.fail("oauth2", e.message, fix);
            None
        }
    }
}

/// A password (file, command or keyring): readable, never shown.
pub(super) fn password(
    config: &Config,
    host: &Smarthost,
    report: &mut Report,
) -> Option<crate::creds::Secret> {
    match crate::creds::load(config) {
        Ok(secret) => {
            if let Some(user) = &host.username {
                report.add(
                    "credentials",
                    Status::Ok,
                    format!("a secret for {user} is readable (not shown)"),
                );
            }
            secret
        }
        Err(e) => {
            report.fail(
                "credentials",
                e.message,
                "fix the password_file or password_command named above",
            );
            None
        }
    }
}
