//! `relaymail oauth2 login|status|logout` (issue 14): the one-time
//! sign-in that gives relaymail a refresh token (device code flow, or a
//! refresh token brought from elsewhere with `--refresh-token-stdin`),
//! which token is held and until when, and forgetting it. No token or
//! secret is ever printed.

use std::io::Write;

use crate::cli::OAuth2Action;
use crate::config::{Config, Mode, OAuth2, OAuth2Flow, Smarthost};
use crate::log::{event, Event, Logger, Severity};
use crate::oauth2::{self, device, http::Http, Tokens};
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

pub fn run(
    config: &Config,
    action: OAuth2Action,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let host = config.smarthost.as_ref().ok_or_else(not_configured)?;
    let settings = host.oauth2.as_ref().ok_or_else(not_configured)?;
    let username = host.username.clone().unwrap_or_default();
    match action {
        OAuth2Action::Login {
            refresh_token_stdin,
        } => {
            if config.mode == Mode::System && !nix::unistd::geteuid().is_root() {
                return Err(Failure::new(
                    Sysexit::NoPerm,
                    "in system mode the refresh token serves every user's mail: run relaymail oauth2 login as root",
                ));
            }
            // No core file or ptrace may show the tokens read below.
            crate::privilege::no_core_dumps();
            if settings.flow == OAuth2Flow::ClientCredentials {
                return client_credentials(config, host, settings, out);
            }
            let issued = if refresh_token_stdin {
                let token = crate::creds::secret_from_stdin("refresh token")?;
                oauth2::redeem(settings, config.mode, &token)?
            } else {
                device_login(config, settings, &username, out)?
            };
            let place = oauth2::save_login(settings, config.mode, &username, &issued)?;
            writeln!(
                out,
                "signed in as {username}: the refresh token is stored in {place}; the access token is valid until {}",
                when(issued.expires_at)
            )
            .map_err(output)?;
            writeln!(
                out,
                "relaymail renews the access token by itself from now on; `relaymail oauth2 status` shows it, `relaymail doctor` tests AUTH with it"
            )
            .map_err(output)?;
            Ok(Sysexit::Ok)
        }
        OAuth2Action::Status { json: false } => status(config, settings, &username, out),
        OAuth2Action::Status { json: true } => status_json(config, settings, &username, out),
        OAuth2Action::Logout => {
            if config.mode == Mode::System && !nix::unistd::geteuid().is_root() {
                return Err(Failure::new(
                    Sysexit::NoPerm,
                    "in system mode only root may remove the system's OAuth2 tokens",
                ));
            }
            let removed = oauth2::logout(settings, config.mode)?;
            if removed.is_empty() {
                writeln!(out, "no OAuth2 token was held").map_err(output)?;
            }
            for what in removed {
                writeln!(out, "removed {what}").map_err(output)?;
            }
            Ok(Sysexit::Ok)
        }
    }
}

/// After `relaymail flush --due` (the timer): keeps an idle host's
/// refresh token in use (see `Tokens::keep_alive`); what happened goes to
/// the log, and a failure is a warning there, never the run's status.
pub fn keep_alive(config: &Config, log: &mut Logger) {
    let Some(tokens) = Tokens::new(config) else {
        return;
    };
    let result = tokens.keep_alive();
    for note in tokens.take_notes() {
        log.info(&Event::new(event::OAUTH2).field("detail", note));
    }
    if let Err(e) = result {
        log.log(
            Severity::Warning,
            &Event::new(event::OAUTH2).field(
                "detail",
                format!(
                    "the refresh token was not used for a week and could not be renewed: {}",
                    e.message
                ),
            ),
        );
    }
}

fn not_configured() -> Failure {
    Failure::new(
        Sysexit::Config,
        "no [smarthost.oauth2] section in the configuration; add one (see relaymail.toml(5))",
    )
}

/// The device code flow, with the prompt on stdout (flushed, so that a
/// script or a terminal sees it while relaymail waits).
fn device_login(
    config: &Config,
    settings: &OAuth2,
    username: &str,
    out: &mut impl Write,
) -> Result<oauth2::token::Issued, Failure> {
    let http = Http::new(settings)?;
    let client_secret = oauth2::store::client_secret(settings, config.mode)?;
    let mut show = |prompt: &device::Prompt| -> Result<(), oauth2::Error> {
        let io = |e: std::io::Error| {
            oauth2::Error::new(oauth2::Kind::Storage, format!("writing the prompt: {e}"))
        };
        writeln!(
            out,
            "To sign in as {username}, open {} and enter the code {} (within {} minutes).",
            prompt.verification_uri,
            prompt.user_code,
            prompt.expires_in.as_secs().div_ceil(60)
        )
        .map_err(io)?;
        if let Some(complete) = &prompt.verification_uri_complete {
            writeln!(out, "Or open {complete}").map_err(io)?;
        }
        writeln!(out, "Waiting for the sign-in to be approved...").map_err(io)?;
        out.flush().map_err(io)
    };
    Ok(device::login(
        &http,
        settings,
        client_secret.as_ref(),
        &mut show,
    )?)
}

/// Nothing to sign in to: a first token proves that the client secret and
/// permissions work, and is cached.
fn client_credentials(
    config: &Config,
    host: &Smarthost,
    settings: &OAuth2,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let tokens = Tokens::for_smarthost(host, config.mode).ok_or_else(not_configured)?;
    let token = tokens.access_token()?;
    writeln!(
        out,
        "flow = \"client_credentials\" needs no sign-in: {} issued a token for client {} (valid until {}), cached in {}",
        oauth2::http::host_of(&settings.token_endpoint),
        settings.client_id,
        when(token.expires_at),
        settings.token_cache.display()
    )
    .map_err(output)?;
    Ok(Sysexit::Ok)
}

fn status(
    config: &Config,
    settings: &OAuth2,
    username: &str,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let status = oauth2::status(settings, config.mode, username)?;
    let tenant = settings
        .tenant
        .as_deref()
        .map(|t| format!(", tenant {t}"))
        .unwrap_or_default();
    let flow = match settings.flow {
        OAuth2Flow::RefreshToken => "refresh_token",
        OAuth2Flow::ClientCredentials => "client_credentials",
    };
    let mut lines = vec![
        format!(
            "provider:       {}{tenant}, client {}, flow {flow}",
            settings.provider.name(),
            settings.client_id
        ),
        format!("account:        {username}"),
        format!("token endpoint: {}", settings.token_endpoint),
        format!("scope:          {}", settings.scope),
    ];
    let held = match &status.refresh {
        Ok(text) => {
            let since = status
                .refresh_saved_at
                .map(|t| format!(", stored {}", when(t)))
                .unwrap_or_default();
            lines.push(format!("refresh token:  {text}{since}"));
            true
        }
        Err(text) => {
            lines.push(format!(
                "refresh token:  {text}; run relaymail oauth2 login{}",
                if config.mode == Mode::System {
                    " as root"
                } else {
                    ""
                }
            ));
            false
        }
    };
    if let Some(at) = status.login_at {
        lines.push(format!("signed in:      {}", when(at)));
    }
    match &status.access {
        Some((expires, _, scope)) => {
            let left = expires - oauth2::now();
            let state = if left > 0 {
                format!("valid until {} (in {})", when(*expires), span(left))
            } else {
                format!(
                    "expired {} ({} ago); the next delivery gets a new one",
                    when(*expires),
                    span(-left)
                )
            };
            let granted = scope
                .as_deref()
                .map(|s| format!(", granted scope {s}"))
                .unwrap_or_default();
            lines.push(format!("access token:   {state}{granted}"));
        }
        None => lines.push("access token:   none cached; the next delivery gets one".into()),
    }
    if status.stale {
        lines.push(format!(
            "note:           {} holds tokens of another client, account or endpoint (the configuration changed); they are not used",
            settings.token_cache.display()
        ));
    }
    lines.push(format!(
        "cache:          {}",
        settings.token_cache.display()
    ));
    for line in lines {
        writeln!(out, "{line}").map_err(output)?;
    }
    Ok(if held {
        Sysexit::Ok
    } else {
        Sysexit::Unavailable
    })
}

/// `status --json`: the same facts as one document, for monitoring a
/// fleet (`refresh_token.held`, `access_token.seconds_left`).
fn status_json(
    config: &Config,
    settings: &OAuth2,
    username: &str,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let status = oauth2::status(settings, config.mode, username)?;
    let rfc3339 = |at: i64| {
        chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    let (held, detail) = match &status.refresh {
        Ok(text) => (true, text.clone()),
        Err(text) => (false, text.clone()),
    };
    let access = status.access.as_ref().map(|(expires, obtained, scope)| {
        serde_json::json!({
            "expires_at": rfc3339(*expires),
            "seconds_left": expires - oauth2::now(),
            "obtained_at": obtained.map(rfc3339),
            "scope": scope,
        })
    });
    let doc = serde_json::json!({
        "provider": settings.provider.name(),
        "tenant": settings.tenant,
        "client_id": settings.client_id,
        "account": username,
        "flow": settings.flow,
        "token_endpoint": settings.token_endpoint,
        "scope": settings.scope,
        "refresh_token": {
            "held": held,
            "detail": detail,
            "stored_at": status.refresh_saved_at.map(rfc3339),
            "signed_in_at": status.login_at.map(rfc3339),
        },
        "access_token": access,
        "cache": settings.token_cache,
        "stale_cache": status.stale,
    });
    writeln!(out, "{doc}").map_err(output)?;
    Ok(if held {
        Sysexit::Ok
    } else {
        Sysexit::Unavailable
    })
}

/// "2026-12-03 11:00:00 UTC".
fn when(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| at.to_string())
}

/// "59 min", "2 h 5 min", "12 s".
fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
