//! `[smarthost.oauth2]`: resolving what the admin wrote into the endpoints,
//! scope and storage places the OAuth2 client uses (issue 14). Provider
//! defaults live here so that `config check` shows the effective values
//! and every mistake is a configuration error naming the key.
//!
//! What each provider needs (see sendmail.example.toml for the admin's
//! side of it):
//! - Microsoft 365: the v2.0 endpoints of the tenant; for a user's
//!   mailbox the delegated scope `https://outlook.office.com/SMTP.Send`
//!   (with `offline_access` for a refresh token), for an application
//!   (`client_credentials`) `https://outlook.office365.com/.default`.
//! - Google: its token and device endpoints and `https://mail.google.com/`.
//! - custom: whatever the authorisation server says; both endpoints given.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::schema::RawOAuth2;
use super::values::{OAuth2Flow, Provider};
use super::{Error, KeyringEntry, Mode};

/// The resolved `[smarthost.oauth2]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OAuth2 {
    pub provider: Provider,
    /// Microsoft: the tenant (ID or domain, or `organizations`).
    pub tenant: Option<String>,
    pub client_id: String,
    /// Where the client secret is, when the application has one.
    pub client_secret: ClientSecret,
    pub scope: String,
    pub token_endpoint: String,
    /// Only needed by `relaymail oauth2 login` (refresh_token flow).
    pub device_authorization_endpoint: Option<String>,
    pub flow: OAuth2Flow,
    /// Extra trusted roots for the token endpoint (added to the system's).
    pub ca_file: Option<PathBuf>,
    /// The cached access token (and, in system mode, the refresh token).
    pub token_cache: PathBuf,
    /// An HTTP proxy for the token endpoint (`http://host:port`).
    pub proxy: Option<String>,
    /// User mode: the keyring entry of the refresh token. System mode
    /// keeps it in `token_cache` (root:relaymail 0640).
    pub refresh_keyring: Option<KeyringEntry>,
}

/// Where the application's client secret comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSecret {
    /// A public client (device code flow without a secret).
    Absent,
    /// `client_secret_file`: its first line; 0600, or root:relaymail 0640.
    File(PathBuf),
    /// `client_secret = "keyring"` (user mode).
    Keyring(KeyringEntry),
}

/// The keyring account of a refresh token for `username`.
pub fn refresh_account(username: &str) -> String {
    format!("oauth2:{username}")
}

/// The keyring account of the client secret of `client_id`.
pub fn client_secret_account(client_id: &str) -> String {
    format!("oauth2-client:{client_id}")
}

/// Microsoft's delegated scope for SMTP AUTH, and `offline_access` for a
/// refresh token.
pub const MICROSOFT_DELEGATED_SCOPE: &str = "https://outlook.office.com/SMTP.Send offline_access";
/// Microsoft's application scope (client credentials).
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";

/// What the resolver needs to know about its surroundings.
pub struct Context<'a> {
    pub where_: &'a str,
    pub mode: Mode,
    pub spool_dir: &'a Path,
    pub username: Option<&'a str>,
    pub keyring_service: &'a str,
}

pub fn resolve(raw: RawOAuth2, cx: &Context<'_>) -> Result<OAuth2, Error> {
    let invalid = |key: &'static str, message: String| Error::Invalid {
        path: cx.where_.to_string(),
        key,
        message,
    };
    let provider = raw.provider.ok_or_else(|| {
        invalid(
            "[smarthost.oauth2] provider",
            "missing; allowed values: \"microsoft\", \"google\", \"custom\"".into(),
        )
    })?;
    let client_id = raw
        .client_id
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            invalid(
                "[smarthost.oauth2] client_id",
                "missing; the application (client) ID of the app registered with the provider"
                    .into(),
            )
        })?;
    if client_id.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            "[smarthost.oauth2] client_id",
            "contains a space or control character".into(),
        ));
    }
    let username = cx.username.filter(|u| !u.is_empty()).ok_or_else(|| {
        invalid(
            "[smarthost] username",
            "OAuth2 authenticates a mailbox: set username to its address (the account that signs in, or for client_credentials the mailbox the application sends as)".into(),
        )
    })?;
    let flow = raw.flow.unwrap_or(OAuth2Flow::RefreshToken);
    let tenant = raw
        .tenant
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(t) = &tenant {
        if provider != Provider::Microsoft {
            return Err(invalid(
                "[smarthost.oauth2] tenant",
                format!(
                    "only provider = \"microsoft\" has tenants; remove it for \"{}\"",
                    provider.name()
                ),
            ));
        }
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(invalid(
                "[smarthost.oauth2] tenant",
                format!("{t:?} is not a tenant ID (a GUID) or domain (contoso.onmicrosoft.com)"),
            ));
        }
    }
    let (token_default, device_default, scope_default) = match provider {
        Provider::Microsoft => {
            let tenant = match (&tenant, flow) {
                (Some(t), _) => t.clone(),
                (None, OAuth2Flow::RefreshToken) => "organizations".to_string(),
                (None, OAuth2Flow::ClientCredentials) => {
                    return Err(invalid(
                        "[smarthost.oauth2] tenant",
                        "flow = \"client_credentials\" needs the tenant: its ID (Entra admin center, Overview, Tenant ID) or domain (contoso.onmicrosoft.com)".into(),
                    ))
                }
            };
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            let scope = match flow {
                OAuth2Flow::RefreshToken => MICROSOFT_DELEGATED_SCOPE,
                OAuth2Flow::ClientCredentials => MICROSOFT_APP_SCOPE,
            };
            (
                Some(format!("{base}/token")),
                Some(format!("{base}/devicecode")),
                Some(scope.to_string()),
            )
        }
        Provider::Google => {
            if flow == OAuth2Flow::ClientCredentials {
                return Err(invalid(
                    "[smarthost.oauth2] flow",
                    "Google has no client_credentials grant for Gmail (a service account signs its own JWT instead); use flow = \"refresh_token\", or an app password with auth = \"plain\"".into(),
                ));
            }
            (
                Some("https://oauth2.googleapis.com/token".to_string()),
                Some("https://oauth2.googleapis.com/device/code".to_string()),
                Some(GOOGLE_SCOPE.to_string()),
            )
        }
        Provider::Custom => (None, None, None),
    };
    let token_endpoint = raw.token_endpoint.or(token_default).ok_or_else(|| {
        invalid(
            "[smarthost.oauth2] token_endpoint",
            "provider = \"custom\" needs the token endpoint's https:// URL".into(),
        )
    })?;
    check_endpoint(&token_endpoint).map_err(|m| invalid("[smarthost.oauth2] token_endpoint", m))?;
    let device_authorization_endpoint = raw.device_authorization_endpoint.or(device_default);
    match (&device_authorization_endpoint, flow) {
        (Some(url), _) => check_endpoint(url)
            .map_err(|m| invalid("[smarthost.oauth2] device_authorization_endpoint", m))?,
        (None, OAuth2Flow::RefreshToken) => {
            return Err(invalid(
                "[smarthost.oauth2] device_authorization_endpoint",
                "provider = \"custom\" with flow = \"refresh_token\" needs the device authorization endpoint's https:// URL (for relaymail oauth2 login)".into(),
            ))
        }
        (None, OAuth2Flow::ClientCredentials) => {}
    }
    let scope = raw
        .scope
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .or(scope_default)
        .ok_or_else(|| {
            invalid(
                "[smarthost.oauth2] scope",
                "provider = \"custom\" needs the scope(s) that allow SMTP, space-separated".into(),
            )
        })?;
    let client_secret = match (raw.client_secret_file, raw.client_secret.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "[smarthost.oauth2] client_secret",
                "client_secret_file and client_secret = \"keyring\" name two places for one secret; keep one".into(),
            ))
        }
        (Some(file), None) => ClientSecret::File(file),
        (None, Some("keyring")) if cx.mode == Mode::System => {
            return Err(invalid(
                "[smarthost.oauth2] client_secret",
                "the OS keyring is per user and cannot serve system mode; use client_secret_file = \"/etc/relaymail/oauth2-client-secret\" (root:relaymail 0640)".into(),
            ))
        }
        (None, Some("keyring")) => ClientSecret::Keyring(KeyringEntry {
            service: cx.keyring_service.to_string(),
            account: client_secret_account(&client_id),
        }),
        (None, Some(_)) => {
            return Err(invalid(
                "[smarthost.oauth2] client_secret",
                "the only value is \"keyring\" (the secret itself never goes in a configuration file); or use client_secret_file".into(),
            ))
        }
        (None, None) => ClientSecret::Absent,
    };
    if provider == Provider::Microsoft
        && flow == OAuth2Flow::RefreshToken
        && client_secret != ClientSecret::Absent
    {
        // The device code sign-in is a public client flow ("Allow public
        // client flows"): Entra ID refuses a secret there (AADSTS700025).
        return Err(invalid(
            "[smarthost.oauth2] client_secret_file",
            "Microsoft's device code sign-in (flow = \"refresh_token\") is a public client flow and refuses a client secret (AADSTS700025); remove client_secret_file / client_secret, or use flow = \"client_credentials\"".into(),
        ));
    }
    if flow == OAuth2Flow::ClientCredentials && client_secret == ClientSecret::Absent {
        return Err(invalid(
            "[smarthost.oauth2] client_secret_file",
            "flow = \"client_credentials\" authenticates the application itself: give its client secret (client_secret_file, or client_secret = \"keyring\" in user mode)".into(),
        ));
    }
    if let Some(proxy) = &raw.proxy {
        let ok = url::Url::parse(proxy)
            .ok()
            .is_some_and(|u| u.scheme() == "http" && u.host_str().is_some());
        if !ok {
            return Err(invalid(
                "[smarthost.oauth2] proxy",
                format!("{proxy:?} is not an HTTP proxy URL; write e.g. \"http://proxy.example.com:3128\""),
            ));
        }
    }
    // Paths the setgid binary opens with the group: never relative to the
    // caller's working directory.
    for (key, path) in [
        (
            "[smarthost.oauth2] client_secret_file",
            match &client_secret {
                ClientSecret::File(p) => Some(p),
                _ => None,
            },
        ),
        ("[smarthost.oauth2] ca_file", raw.ca_file.as_ref()),
        ("[smarthost.oauth2] token_cache", raw.token_cache.as_ref()),
    ] {
        if let Some(p) = path.filter(|p| !p.as_os_str().is_empty() && p.is_relative()) {
            return Err(invalid(
                key,
                format!("{} is a relative path; give the full path (it would depend on the directory sendmail is run from)", p.display()),
            ));
        }
    }
    let token_cache = raw
        .token_cache
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| default_cache(cx.spool_dir));
    if token_cache.file_name().is_none() {
        return Err(invalid(
            "[smarthost.oauth2] token_cache",
            format!("{} is not a file path", token_cache.display()),
        ));
    }
    let refresh_keyring =
        (cx.mode == Mode::User && flow == OAuth2Flow::RefreshToken).then(|| KeyringEntry {
            service: cx.keyring_service.to_string(),
            account: refresh_account(username),
        });
    Ok(OAuth2 {
        provider,
        tenant,
        client_id,
        client_secret,
        scope,
        token_endpoint,
        device_authorization_endpoint,
        flow,
        ca_file: raw.ca_file,
        token_cache,
        proxy: raw.proxy,
        refresh_keyring,
    })
}

/// The state directory under the spool (root:relaymail 2770 in system
/// mode, like the spool) and the cache file in it.
pub fn default_cache(spool_dir: &Path) -> PathBuf {
    spool_dir.join("state").join("oauth2-token.json")
}

/// A token endpoint is https; plain http only to this host (a local
/// authorisation server or a test), since the client secret and refresh
/// token cross it.
pub fn check_endpoint(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"https://login.example.com/token\"")
    })?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} carries credentials in the URL; use client_secret_file instead"
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "{text:?} is plain http: the client secret and tokens would cross the network in cleartext; use https:// (http:// is allowed only to a loopback address)"
        )),
        other => Err(format!("{text:?}: scheme {other:?} is not https")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx<'a>(mode: Mode, user: Option<&'a str>) -> Context<'a> {
        Context {
            where_: "t.toml",
            mode,
            spool_dir: Path::new("/var/spool/relaymail"),
            username: user,
            keyring_service: "relaymail",
        }
    }

    fn raw(provider: Provider) -> RawOAuth2 {
        RawOAuth2 {
            provider: Some(provider),
            client_id: Some("app-id".into()),
            ..RawOAuth2::default()
        }
    }

    #[test]
    fn microsoft_defaults_follow_the_flow_and_tenant() {
        let o = resolve(raw(Provider::Microsoft), &cx(Mode::User, Some("a@x"))).expect("valid");
        assert_eq!(
            o.token_endpoint,
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        assert_eq!(
            o.device_authorization_endpoint.as_deref(),
            Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode")
        );
        assert_eq!(o.scope, MICROSOFT_DELEGATED_SCOPE);
        assert_eq!(
            o.refresh_keyring,
            Some(KeyringEntry {
                service: "relaymail".into(),
                account: "oauth2:a@x".into()
            })
        );
        assert_eq!(
            o.token_cache,
            PathBuf::from("/var/spool/relaymail/state/oauth2-token.json")
        );
        let mut app = raw(Provider::Microsoft);
        app.flow = Some(OAuth2Flow::ClientCredentials);
        app.client_secret_file = Some("/etc/relaymail/secret".into());
        let text = resolve(app, &cx(Mode::System, Some("a@x")))
            .expect_err("no tenant")
            .to_string();
        assert!(text.contains("needs the tenant"), "{text}");
        let mut app = raw(Provider::Microsoft);
        app.flow = Some(OAuth2Flow::ClientCredentials);
        app.client_secret_file = Some("/etc/relaymail/secret".into());
        app.tenant = Some("contoso.onmicrosoft.com".into());
        let o = resolve(app, &cx(Mode::System, Some("a@x"))).expect("valid");
        assert_eq!(o.scope, MICROSOFT_APP_SCOPE);
        assert!(o.token_endpoint.contains("/contoso.onmicrosoft.com/"));
        assert_eq!(o.refresh_keyring, None, "system mode: the state file");
    }

    #[test]
    fn paths_are_absolute_and_microsofts_device_flow_takes_no_secret() {
        let mut r = raw(Provider::Microsoft);
        r.token_cache = Some("tokens.json".into());
        let text = resolve(r, &cx(Mode::System, Some("a@x")))
            .expect_err("relative")
            .to_string();
        assert!(
            text.contains("token_cache") && text.contains("relative"),
            "{text}"
        );
        let mut r = raw(Provider::Microsoft);
        r.client_secret_file = Some("/etc/relaymail/secret".into());
        let text = resolve(r, &cx(Mode::System, Some("a@x")))
            .expect_err("secret with device flow")
            .to_string();
        assert!(text.contains("AADSTS700025"), "{text}");
    }

    #[test]
    fn endpoints_are_https_except_to_loopback() {
        assert!(check_endpoint("https://login.example.com/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://[::1]:8080/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        let text = check_endpoint("http://login.example.com/token").expect_err("http");
        assert!(text.contains("cleartext"), "{text}");
        assert!(check_endpoint("https://u:p@login.example.com/").is_err());
        assert!(check_endpoint("login.example.com").is_err());
    }

    #[test]
    fn custom_needs_its_endpoints_and_scope() {
        let text = resolve(raw(Provider::Custom), &cx(Mode::User, Some("a@x")))
            .expect_err("no endpoint")
            .to_string();
        assert!(text.contains("token_endpoint"), "{text}");
        let mut r = raw(Provider::Custom);
        r.token_endpoint = Some("https://as.example/token".into());
        let text = resolve(r, &cx(Mode::User, Some("a@x")))
            .expect_err("no device endpoint")
            .to_string();
        assert!(text.contains("device_authorization_endpoint"), "{text}");
    }

    #[test]
    fn secrets_are_named_never_written() {
        let mut r = raw(Provider::Google);
        r.client_secret = Some("GOCSPX-hunter2".into());
        let text = resolve(r, &cx(Mode::User, Some("a@x")))
            .expect_err("literal")
            .to_string();
        assert!(
            !text.contains("hunter2") && text.contains("\"keyring\""),
            "{text}"
        );
        let mut r = raw(Provider::Google);
        r.client_secret = Some("keyring".into());
        let text = resolve(r, &cx(Mode::System, Some("a@x")))
            .expect_err("system keyring")
            .to_string();
        assert!(text.contains("client_secret_file"), "{text}");
        let text = resolve(raw(Provider::Google), &cx(Mode::User, None))
            .expect_err("no username")
            .to_string();
        assert!(text.contains("[smarthost] username"), "{text}");
    }
}
