//! The token endpoint (RFC 6749 section 3.2): the client_credentials and
//! refresh_token grants, the device code grant's polls (RFC 8628 section
//! 3.4), and what its errors mean for an admin (section 5.2, plus the
//! providers' own codes such as Microsoft's AADSTS numbers).

use super::http::{host_of, Http, Reply};
use super::{now, printable, Error, Kind};
use crate::config::{OAuth2, Provider};
use crate::creds::Secret;

/// An access token as the endpoint issued it.
pub struct Issued {
    pub access_token: Secret,
    /// Seconds since the epoch.
    pub expires_at: i64,
    /// A new refresh token, when the endpoint issued (or rotated) one.
    pub refresh_token: Option<Secret>,
    /// The scope granted, when the endpoint says.
    pub scope: Option<String>,
}

/// How long a token lives when the endpoint does not say (RFC 6749
/// leaves `expires_in` optional; Microsoft and Google always send it).
const DEFAULT_LIFETIME: u64 = 3600;
/// Longer than any provider issues; a bigger number is a broken reply.
const MAX_LIFETIME: u64 = 366 * 86_400;

/// What a token request asks for.
pub enum Grant<'a> {
    ClientCredentials,
    RefreshToken(&'a Secret),
    DeviceCode(&'a str),
}

impl Grant<'_> {
    fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::DeviceCode(_) => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }
}

/// One token request. `Ok(Err(reply))` is an OAuth2 error answer (for
/// the device flow's polls to read); `Err` any other failure.
pub fn request(
    http: &Http,
    settings: &OAuth2,
    client_secret: Option<&Secret>,
    grant: &Grant<'_>,
) -> Result<Result<Issued, Reply>, Error> {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", grant.name()),
        ("client_id", &settings.client_id),
    ];
    match grant {
        Grant::ClientCredentials => form.push(("scope", &settings.scope)),
        Grant::RefreshToken(token) => {
            form.push(("refresh_token", token.expose()));
            // Microsoft wants the scope again; others accept it.
            form.push(("scope", &settings.scope));
        }
        Grant::DeviceCode(code) => form.push(("device_code", code)),
    }
    if let Some(secret) = client_secret {
        form.push(("client_secret", secret.expose()));
    }
    let reply = http.post_form(&settings.token_endpoint, &form)?;
    if reply.status == 200 && reply.str("access_token").is_some() {
        return issued(settings, &reply).map(Ok);
    }
    if reply.str("error").is_some() {
        return Ok(Err(reply));
    }
    Err(unexpected(settings, &reply))
}

fn issued(settings: &OAuth2, reply: &Reply) -> Result<Issued, Error> {
    let access = reply
        .str("access_token")
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Error::new(
                Kind::Provider,
                format!(
                    "the token endpoint {} sent an access token that cannot go into SMTP AUTH (empty or not printable ASCII)",
                    host_of(&settings.token_endpoint)
                ),
            )
        })?;
    if let Some(kind) = reply.str("token_type") {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(Error::new(
                Kind::Provider,
                format!(
                    "the token endpoint {} issued a {kind:?} token; SMTP (XOAUTH2, OAUTHBEARER) takes Bearer tokens only",
                    host_of(&settings.token_endpoint)
                ),
            ));
        }
    }
    let lifetime = reply
        .number("expires_in")
        .unwrap_or(DEFAULT_LIFETIME)
        .min(MAX_LIFETIME);
    Ok(Issued {
        access_token: Secret::new(access.to_string()),
        expires_at: now() + i64::try_from(lifetime).unwrap_or(0),
        refresh_token: reply
            .str("refresh_token")
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.to_string())),
        scope: reply.str("scope").map(str::to_string),
    })
}

/// A reply that is neither a token nor an OAuth2 error (an HTML page from
/// a proxy, a 404 for a wrong URL, a 5xx).
fn unexpected(settings: &OAuth2, reply: &Reply) -> Error {
    let host = host_of(&settings.token_endpoint);
    let said = if reply.text.is_empty() {
        String::new()
    } else {
        format!(": {}", reply.text)
    };
    let (kind, hint) = match reply.status {
        404 | 405 => (
            Kind::Config,
            "check [smarthost.oauth2] token_endpoint (and tenant)",
        ),
        429 => (
            Kind::Provider,
            "the provider is rate-limiting this client; the message is retried later",
        ),
        500..=599 => (
            Kind::Network,
            "the provider is having trouble; the message is retried later",
        ),
        _ => (Kind::Provider, "check [smarthost.oauth2] token_endpoint"),
    };
    Error::new(
        kind,
        format!(
            "the token endpoint {host} answered HTTP {} without a token or an OAuth2 error{said}; {hint}",
            reply.status
        ),
    )
}

/// An OAuth2 error answer as a sentence: the provider's code, its own
/// description (trimmed; it never holds a secret of ours, and `scrub`
/// would mask one), and what to do.
pub fn refusal(settings: &OAuth2, grant: &Grant<'_>, reply: &Reply, scrub: &[&Secret]) -> Error {
    let code = reply.str("error").unwrap_or("error");
    let code = printable(code, 60);
    let mut description = reply
        .str("error_description")
        .map(|d| printable(d.lines().next().unwrap_or(""), 300))
        .unwrap_or_default();
    for secret in scrub {
        if !secret.expose().is_empty() {
            description = description.replace(secret.expose(), "***");
        }
    }
    // Microsoft's descriptions start with the AADSTS number that says it
    // all; its trace and correlation IDs follow on later lines.
    let aadsts = description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.starts_with("AADSTS"))
        .map(str::to_string);
    let what = match grant {
        Grant::ClientCredentials => "refused the client credentials",
        Grant::RefreshToken(_) => "refused the refresh token",
        Grant::DeviceCode(_) => "refused the sign-in",
    };
    let fix = advice(settings, grant, &code, aadsts.as_deref());
    let kind = match code.as_str() {
        "temporarily_unavailable" | "server_error" => Kind::Network,
        "invalid_grant"
        | "interaction_required"
        | "consent_required"
        | "login_required"
        | "expired_token"
        | "access_denied"
        | "authorization_declined" => Kind::LoginNeeded,
        _ => Kind::Provider,
    };
    let said = if description.is_empty() {
        String::new()
    } else {
        format!(" ({description})")
    };
    Error::new(
        kind,
        format!(
            "the token endpoint {} {what}: {code}{said}; {fix}",
            host_of(&settings.token_endpoint)
        ),
    )
    .with_code(&code)
}

/// What to do about an error code: the provider's own number first.
fn advice(settings: &OAuth2, grant: &Grant<'_>, code: &str, aadsts: Option<&str>) -> String {
    let login = "run `relaymail oauth2 login` again (as root in system mode)";
    if let Some(number) = aadsts {
        let known = match number {
            "AADSTS50076" | "AADSTS50079" | "AADSTS50158" => Some(format!(
                "a Conditional Access or MFA policy now asks for more than the sign-in gave; {login}, or exclude this account from the policy"
            )),
            "AADSTS65001" => Some(
                "the application lacks consent for SMTP.Send: an admin grants it in Entra admin center, App registrations, API permissions, \"Grant admin consent\", then run `relaymail oauth2 login` again".to_string(),
            ),
            "AADSTS700082" | "AADSTS700084" | "AADSTS70043" | "AADSTS70008" => Some(format!(
                "the refresh token expired (unused too long, or a sign-in frequency policy); {login}"
            )),
            "AADSTS50173" | "AADSTS50133" | "AADSTS50089" => Some(format!(
                "the account's password changed or its sessions were revoked; {login}"
            )),
            "AADSTS7000215" | "AADSTS7000222" => Some(
                "the client secret is wrong or has expired: create a new one (App registrations, Certificates & secrets) and put its value in client_secret_file".to_string(),
            ),
            "AADSTS700025" => Some(
                "the application is a public client and may not present a client secret: remove client_secret_file (the device code sign-in needs none)".to_string(),
            ),
            "AADSTS7000218" => Some(
                "the application is not a public client: turn on \"Allow public client flows\" (App registrations, Authentication), or give its client secret (client_secret_file)".to_string(),
            ),
            "AADSTS700016" => Some(
                "no such application in this tenant: check client_id and tenant in [smarthost.oauth2]".to_string(),
            ),
            "AADSTS90002" | "AADSTS900023" => Some(
                "no such tenant: check tenant in [smarthost.oauth2] (its ID, or a domain such as contoso.onmicrosoft.com)".to_string(),
            ),
            "AADSTS50126" | "AADSTS50034" => Some(format!(
                "the account could not sign in (wrong user or password at sign-in); {login}"
            )),
            "AADSTS53003" => Some(
                "a Conditional Access policy blocks this sign-in (for example by location or device); exclude this account or application from it".to_string(),
            ),
            "AADSTS50057" => Some("the account is disabled in the tenant".to_string()),
            _ => None,
        };
        if let Some(text) = known {
            return text;
        }
    }
    match (code, grant) {
        ("invalid_grant", Grant::RefreshToken(_)) => format!(
            "the refresh token is no longer valid (expired, revoked, consent withdrawn or the password changed); {login}"
        ),
        ("invalid_grant", Grant::ClientCredentials) => {
            "the grant was refused: check tenant, client_id and the application's permissions".to_string()
        }
        ("invalid_grant", Grant::DeviceCode(_)) => format!("the sign-in was not accepted; {login}"),
        ("interaction_required" | "consent_required" | "login_required", _) => {
            format!("the provider wants an interactive sign-in; {login}")
        }
        ("invalid_client", _) => {
            "check client_id and the client secret (client_secret_file); for a public client without a secret, the provider must allow public client flows".to_string()
        }
        ("unauthorized_client", _) => match settings.provider {
            Provider::Microsoft => "the application may not use this grant: for relaymail oauth2 login turn on \"Allow public client flows\" (App registrations, Authentication); for client_credentials register its service principal in Exchange Online".to_string(),
            Provider::Google => "the OAuth client may not use this grant: create an OAuth client of type \"TVs and Limited Input devices\" for relaymail oauth2 login".to_string(),
            Provider::Custom => "the authorisation server does not allow this client to use this grant".to_string(),
        },
        ("invalid_scope", _) => match settings.provider {
            Provider::Google => format!(
                "Google refused the scope {:?}: its device sign-in does not grant the Gmail scope to every client; use an app password (auth = \"plain\"), or obtain a refresh token elsewhere and store it with `relaymail oauth2 login --refresh-token-stdin`",
                settings.scope
            ),
            _ => format!(
                "the provider refused the scope {:?}: check [smarthost.oauth2] scope and the application's API permissions",
                settings.scope
            ),
        },
        ("access_denied" | "authorization_declined", _) => {
            "the sign-in was declined; run relaymail oauth2 login again and approve it".to_string()
        }
        ("expired_token", _) => {
            "the code expired before it was entered; run relaymail oauth2 login again".to_string()
        }
        ("temporarily_unavailable" | "server_error", _) => {
            "the provider is having trouble; the message stays queued and is retried".to_string()
        }
        ("unsupported_grant_type", _) => {
            "the endpoint does not support this grant: check [smarthost.oauth2] flow and token_endpoint".to_string()
        }
        _ => "check the application's registration with the provider and [smarthost.oauth2]".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(provider: Provider) -> OAuth2 {
        OAuth2 {
            provider,
            tenant: None,
            client_id: "app".into(),
            client_secret: crate::config::oauth2::ClientSecret::Absent,
            scope: "https://mail.google.com/".into(),
            token_endpoint: "https://login.example.com/t/token".into(),
            device_authorization_endpoint: None,
            flow: crate::config::OAuth2Flow::RefreshToken,
            ca_file: None,
            token_cache: "/tmp/x".into(),
            proxy: None,
            refresh_keyring: None,
        }
    }

    fn reply(json: serde_json::Value) -> Reply {
        Reply {
            status: 400,
            json: json.as_object().cloned().unwrap_or_default(),
            text: String::new(),
        }
    }

    #[test]
    fn a_revoked_refresh_token_names_the_code_and_the_fix_never_the_token() {
        let token = Secret::new("0.AXkA-rt-secret".into());
        let e = refusal(
            &settings(Provider::Microsoft),
            &Grant::RefreshToken(&token),
            &reply(serde_json::json!({
                "error": "invalid_grant",
                "error_description": "AADSTS50173: The provided grant has expired due to it being revoked, token 0.AXkA-rt-secret.\r\nTrace ID: 1"
            })),
            &[&token],
        );
        assert_eq!(e.kind, Kind::LoginNeeded);
        assert_eq!(e.code.as_deref(), Some("invalid_grant"));
        assert!(
            e.message.contains(
                "login.example.com refused the refresh token: invalid_grant (AADSTS50173"
            ) && e.message.contains("run `relaymail oauth2 login` again"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("rt-secret") && !e.message.contains("Trace"),
            "{}",
            e.message
        );
    }

    #[test]
    fn googles_device_flow_scope_refusal_says_what_works() {
        let e = refusal(
            &settings(Provider::Google),
            &Grant::DeviceCode("dc"),
            &reply(serde_json::json!({"error": "invalid_scope"})),
            &[],
        );
        assert!(e.message.contains("app password"), "{}", e.message);
    }
}
