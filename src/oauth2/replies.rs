//! What Microsoft 365's and Gmail's SMTP refusals mean, and the exact
//! setting or tenant change that fixes each: for the deferral's log line
//! and for `relaymail doctor`. Matched on the enhanced status code (and
//! Microsoft's `SendAsDenied` word); the reply itself is always shown
//! as the relay sent it.

/// One known refusal: what it means here and what to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    pub meaning: &'static str,
    pub fix: &'static str,
}

/// The explanation of a relay's reply, when it is one of the providers'
/// well-known ones.
pub fn explain(reply: &str) -> Option<Known> {
    let reply = &single_line(reply);
    let code = crate::smtp_syntax::enhanced_status(reply).map(|c| c.to_string());
    let lower = reply.to_ascii_lowercase();
    if lower.contains("sendasdenied") || code.as_deref() == Some("5.7.60") {
        return Some(Known {
            meaning: "Microsoft 365 sends only as the signed-in mailbox (or one it has Send As rights on), and this message's envelope sender is another address",
            fix: "set [rewrite] sender = the username's address (with rewrite_from = true for the From: header), or grant the mailbox Send As on that sender (Exchange admin center, Mailboxes, Delegation)",
        });
    }
    let known = match code.as_deref()? {
        "5.7.139" if lower.contains("security defaults") => Known {
            meaning: "Microsoft 365's security defaults block SMTP AUTH for this account",
            fix: "turn off security defaults for the tenant (Entra admin center, Overview, Properties, Manage security defaults) and use Conditional Access instead, or relay through a connector without AUTH",
        },
        "5.7.139" => Known {
            meaning: "SMTP AUTH (authenticated client submission) is disabled for the tenant or for this mailbox",
            fix: "enable it for the mailbox: Microsoft 365 admin center, Users, the user, Mail, Manage email apps, tick Authenticated SMTP (PowerShell: Set-CASMailbox -Identity USER -SmtpClientAuthenticationDisabled $false; for the whole tenant Set-TransportConfig -SmtpClientAuthenticationDisabled $false); it can take an hour to apply",
        },
        "5.7.30" => Known {
            meaning: "Microsoft 365 no longer accepts a password (Basic authentication) for SMTP",
            fix: "add [smarthost.oauth2] with provider = \"microsoft\", tenant and client_id (see relaymail.toml(5)), then run relaymail oauth2 login",
        },
        "5.7.3" => Known {
            meaning: "Microsoft 365 refused the credentials: a token for another mailbox than username, a token without SMTP.Send, an application without rights on the mailbox, or a wrong password",
            fix: "username must be the mailbox that signed in (relaymail oauth2 status shows it); delegated: the app needs the Office 365 Exchange Online permission SMTP.Send; client_credentials: register the app's service principal in Exchange Online (New-ServicePrincipal -AppId CLIENT_ID -ObjectId OBJECT_ID) and give it the mailbox (Add-MailboxPermission -Identity USER -User SERVICE_PRINCIPAL_ID -AccessRights FullAccess)",
        },
        "5.7.57" => Known {
            meaning: "the relay wants authentication before it takes mail (Microsoft 365 client submission)",
            fix: "set username and [smarthost.oauth2] (or a password) and keep auth = \"auto\"; Microsoft 365 takes client submission on smtp.office365.com port 587 with tls = \"starttls\"",
        },
        "5.7.9" => Known {
            meaning: "Google wants an app password or OAuth2 for this account (2-Step Verification is on, or the sign-in is not allowed for less secure apps)",
            fix: "use OAuth2 ([smarthost.oauth2] provider = \"google\") or create an app password (Google Account, Security, App passwords) and put it in password_file",
        },
        "5.7.8" => Known {
            meaning: "Google refused the user name with this password or token",
            fix: "username must be the full Gmail or Workspace address the token (or app password) belongs to; an OAuth2 token needs the scope https://mail.google.com/",
        },
        "5.7.14" => Known {
            meaning: "Google blocked the sign-in and wants it confirmed in a web browser",
            fix: "sign in to that account once in a browser (and confirm the sign-in under Security), then flush the queue; OAuth2 avoids this",
        },
        _ => return None,
    };
    Some(known)
}

/// Whether an AUTH refusal may only mean that the access token has
/// expired (or was revoked since it was cached), so that one new token
/// is worth a try: a 535 that is not one of the refusals a new token
/// cannot cure, or a SASL error document saying 401 / invalid_token
/// (RFC 7628 section 3.2.2).
pub fn may_be_expired(code: u16, reply: &str, details: Option<&str>) -> bool {
    if let Some(json) = details.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) {
        let status = json.get("status").and_then(|s| s.as_str()).unwrap_or("");
        if status == "401" || status == "invalid_token" {
            return true;
        }
    }
    let reply = &single_line(reply);
    let enhanced = crate::smtp_syntax::enhanced_status(reply).map(|c| c.to_string());
    code == 535
        && !matches!(
            enhanced.as_deref(),
            Some("5.7.139" | "5.7.30" | "5.7.9" | "5.7.14")
        )
}

/// "534-5.7.9 ..." (a multiline reply's first line, as quoted in
/// provider documentation) read as "534 5.7.9 ...".
fn single_line(reply: &str) -> String {
    let mut text = reply.trim().to_string();
    if text.len() > 3 && text.is_char_boundary(3) && text.get(3..4) == Some("-") {
        text.replace_range(3..4, " ");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_reply_has_its_fix() {
        for (reply, wanted) in [
            ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "Set-CASMailbox"),
            ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.", "security defaults"),
            ("550 5.7.30 Basic authentication is not supported for Client Submission.", "relaymail oauth2 login"),
            ("535 5.7.3 Authentication unsuccessful", "Add-MailboxPermission"),
            ("530 5.7.57 Client not authenticated to send mail.", "port 587"),
            ("534-5.7.9 Application-specific password required.", "app password"),
            ("535-5.7.8 Username and Password not accepted.", "https://mail.google.com/"),
            ("554 5.2.252 SendAsDenied; alerts@example.com not allowed to send as root@web01", "[rewrite] sender"),
        ] {
            let known = explain(reply).unwrap_or_else(|| panic!("{reply}"));
            assert!(known.fix.contains(wanted), "{reply}: {}", known.fix);
        }
        assert_eq!(explain("250 2.0.0 Ok"), None);
        assert_eq!(explain("535 5.7.0 nope"), None);
    }

    #[test]
    fn only_token_shaped_refusals_are_worth_a_new_token() {
        assert!(may_be_expired(
            535,
            "535 5.7.3 Authentication unsuccessful",
            None
        ));
        assert!(may_be_expired(
            535,
            "535-5.7.8 Username and Password not accepted",
            None
        ));
        assert!(may_be_expired(
            454,
            "454 4.7.0 Try again",
            Some(r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#)
        ));
        assert!(!may_be_expired(
            535,
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
            None
        ));
        assert!(!may_be_expired(
            534,
            "534-5.7.9 Application-specific password required",
            None
        ));
        assert!(!may_be_expired(
            550,
            "550 5.7.30 Basic authentication is not supported",
            None
        ));
    }
}
