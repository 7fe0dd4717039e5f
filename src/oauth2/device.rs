//! The device authorization grant (RFC 8628) behind `relaymail oauth2
//! login`: ask for a code, show the admin where to enter it, and poll the
//! token endpoint at the interval the provider sets (five seconds more
//! after each `slow_down`) until the sign-in is approved, declined or
//! the code expires.

use std::time::{Duration, Instant};

use super::http::{host_of, Http};
use super::token::{self, Grant, Issued};
use super::{printable, Error, Kind};
use crate::config::{OAuth2, Provider};
use crate::creds::Secret;

/// What the admin is shown.
pub struct Prompt {
    pub verification_uri: String,
    /// The URI with the code in it, when the provider offers one.
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: Duration,
    /// The provider's own sentence (Microsoft sends one).
    pub message: Option<String>,
}

/// RFC 8628 section 3.5: the default, and the step after `slow_down`.
const DEFAULT_INTERVAL: u64 = 5;
const SLOW_DOWN_STEP: u64 = 5;
/// A code that lives longer than this is not believed.
const MAX_WAIT: u64 = 3600;

/// Runs the whole flow: `show` gets the prompt once, `waiting` is called
/// before each poll (for a progress line). Returns the issued tokens.
pub fn login(
    http: &Http,
    settings: &OAuth2,
    client_secret: Option<&Secret>,
    show: &mut dyn FnMut(&Prompt) -> Result<(), Error>,
) -> Result<Issued, Error> {
    let endpoint = settings
        .device_authorization_endpoint
        .as_deref()
        .ok_or_else(|| {
            Error::new(
                Kind::Config,
                "no [smarthost.oauth2] device_authorization_endpoint: the device sign-in is not available",
            )
        })?;
    let mut form: Vec<(&str, &str)> = vec![
        ("client_id", &settings.client_id),
        ("scope", &settings.scope),
    ];
    // RFC 8628 section 3.1 authenticates a confidential client here too;
    // Google's device endpoint takes only client_id and scope (its
    // secret goes with the polls), and Microsoft's flow has no secret.
    if let (Some(secret), Provider::Custom) = (client_secret, settings.provider) {
        form.push(("client_secret", secret.expose()));
    }
    let reply = http.post_form(endpoint, &form)?;
    if reply.str("error").is_some() {
        let secrets: Vec<&Secret> = client_secret.into_iter().collect();
        return Err(token::refusal(
            settings,
            &Grant::DeviceCode(""),
            &reply,
            &secrets,
        ));
    }
    let field = |key: &str| reply.str(key).map(|v| printable(v, 500));
    let (Some(device_code), Some(user_code), Some(uri)) = (
        reply.str("device_code").map(str::to_string),
        field("user_code"),
        // Google says verification_url.
        field("verification_uri").or_else(|| field("verification_url")),
    ) else {
        return Err(Error::new(
            Kind::Provider,
            format!(
                "the device authorization endpoint {} answered HTTP {} without a device code, user code and verification URI{}",
                host_of(endpoint),
                reply.status,
                if reply.text.is_empty() { String::new() } else { format!(": {}", reply.text) }
            ),
        ));
    };
    let expires_in = reply.number("expires_in").unwrap_or(900).clamp(1, MAX_WAIT);
    let mut interval = reply
        .number("interval")
        .unwrap_or(DEFAULT_INTERVAL)
        .clamp(1, 60);
    show(&Prompt {
        verification_uri: uri,
        verification_uri_complete: field("verification_uri_complete"),
        user_code,
        expires_in: Duration::from_secs(expires_in),
        message: field("message"),
    })?;
    let deadline = Instant::now() + Duration::from_secs(expires_in);
    let secrets: Vec<&Secret> = client_secret.into_iter().collect();
    loop {
        let wait = Duration::from_secs(interval);
        if Instant::now() + wait > deadline {
            return Err(Error::new(
                Kind::LoginNeeded,
                format!(
                    "the code was not entered within {} minutes; run relaymail oauth2 login again",
                    expires_in.div_ceil(60)
                ),
            ));
        }
        std::thread::sleep(wait);
        match token::request(
            http,
            settings,
            client_secret,
            &Grant::DeviceCode(&device_code),
        )? {
            Ok(issued) => return Ok(issued),
            Err(reply) => match reply.str("error").unwrap_or("") {
                "authorization_pending" => {}
                "slow_down" => interval += SLOW_DOWN_STEP,
                _ => {
                    return Err(token::refusal(
                        settings,
                        &Grant::DeviceCode(&device_code),
                        &reply,
                        &secrets,
                    ))
                }
            },
        }
    }
}
