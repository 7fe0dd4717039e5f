//! `[smarthost.oauth2]` end to end (issue 14): relaymail signs in with the
//! device code flow against a local OAuth2 authorisation server on
//! loopback HTTPS (tests/authserver), keeps and refreshes the access
//! token itself, and presents it over STARTTLS to relaymail's own sink,
//! which records the AUTH user and a digest of the bearer token. What an
//! admin checks: the token the server issued is the one the relay saw,
//! refreshes happen when due and once, failures defer with the
//! provider's reason, and no token or secret is ever shown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod authserver;
mod common;

use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::time::Duration;

use authserver::{sha256_hex, AuthServer, ConnectProxy, ScriptedRelay};
use common::sink::Sink;
use common::*;

fn unique_user(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}@test.example", std::process::id())
}

/// A user-mode client whose smarthost is the sink's STARTTLS listener,
/// with `[smarthost.oauth2]` pointing at `server`.
fn oauth_env(sink: &Sink, server: &AuthServer, user: &str, smarthost: &str, oauth: &str) -> Env {
    let cert = sink.dir.path().join("state/sink-cert.pem");
    let env = Env::new();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let section = format!(
        "\n[smarthost]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = {:?}\nusername = {user:?}\n{smarthost}\n{}",
        sink.port(0),
        cert.display().to_string(),
        server.section(oauth)
    );
    std::fs::write(&env.config, text + &section).unwrap();
    env
}

/// Removes the test's keyring entry and cache however the test ends.
struct Logout<'a>(&'a Env);

impl Drop for Logout<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("relaymail", &["oauth2", "logout"], b"");
    }
}

/// Fails when any of the server's tokens or secrets shows in `text`.
fn assert_no_secret(server: &AuthServer, text: &str, what: &str) {
    for secret in server.secrets() {
        assert!(
            !text.contains(&secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

fn all_output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Signs in with a refresh token the server minted, as an admin who got
/// one elsewhere would (`--refresh-token-stdin`).
fn login_with(env: &Env, server: &AuthServer) {
    let token = server.mint_refresh_token();
    let out = env.run(
        "relaymail",
        &["oauth2", "login", "--refresh-token-stdin"],
        format!("{token}\n").as_bytes(),
    );
    assert!(out.status.success(), "login: {}", outcome(&out));
    assert_no_secret(server, &all_output(&out), "login");
}

fn deliver(env: &Env, server: &AuthServer, subject: &str) {
    let out = env.sendmail(
        &["-odi", "ops@example.net"],
        &format!("Subject: {subject}\n\nbody\n"),
    );
    assert_exit(&out, 0, env, subject);
    assert_no_secret(server, &all_output(&out), subject);
}

#[test]
fn device_login_stores_the_refresh_token_and_mail_goes_out_with_the_issued_token() {
    let server = AuthServer::start();
    // Two polls before the approval counts: pending, then slow_down.
    server.with(|s| s.device_script = ["authorization_pending", "slow_down"].into());
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("device");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);

    let mut child = env
        .cmd("relaymail")
        .args(["oauth2", "login"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let prompt = lines.next().unwrap().unwrap();
    assert!(
        prompt.contains(&format!(
            "To sign in as {user}, open https://127.0.0.1:{}/device and enter the code WDJB-MJHT",
            server.port
        )),
        "{prompt}"
    );
    // The admin approves in the browser only now.
    server.with(|s| s.approved = true);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let said = format!("{prompt}\n{}\n{}", rest.join("\n"), stderr(&out));
    assert!(out.status.success(), "login: {said}");
    assert!(
        said.contains(&format!(
            "signed in as {user}: the refresh token is stored in the kernel keyutils store"
        )),
        "{said}"
    );
    assert_no_secret(&server, &said, "login");
    let polls: Vec<_> = server.with(|s| {
        s.requests
            .iter()
            .filter(|r| {
                r.form.get("grant_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:grant-type:device_code")
            })
            .map(|r| r.at)
            .collect()
    });
    assert_eq!(polls.len(), 3, "pending, slow_down, approved");
    assert!(
        polls[2] - polls[1] >= Duration::from_secs(6),
        "slow_down adds 5 s to the 1 s interval: {:?}",
        polls[2] - polls[1]
    );
    let scope = server.with(|s| s.requests[0].form.get("scope").cloned());
    assert_eq!(scope.as_deref(), Some("smtp.send offline_access"));

    let status = env.run("relaymail", &["oauth2", "status"], b"");
    assert!(status.status.success(), "{}", outcome(&status));
    let text = stdout(&status);
    assert!(
        text.contains(&format!(
            "a refresh token for oauth2:{user} is held in keyutils"
        )) && text.contains("access token:   valid until"),
        "{text}"
    );
    assert_no_secret(&server, &all_output(&status), "status");
    let json = env.run("relaymail", &["oauth2", "status", "--json"], b"");
    assert!(json.status.success(), "{}", outcome(&json));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(doc["refresh_token"]["held"], true, "{doc}");
    assert_eq!(doc["account"], user.as_str());
    let left = doc["access_token"]["seconds_left"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{doc}");
    assert_no_secret(&server, &all_output(&json), "status --json");

    deliver(&env, &server, "after login");
    let e = sink.event();
    assert_eq!(e["auth_user"], user.as_str());
    assert_eq!(e["auth_mechanism"], "XOAUTH2");
    assert_eq!(e["tls"], "TLSv1.3");
    assert_eq!(
        e["auth_token_sha256"],
        sha256_hex(&server.access(1)),
        "the token the server issued"
    );
    assert_eq!(
        server.refreshes().len(),
        0,
        "the login's token is still fresh"
    );

    // The cache is private and holds no refresh token (that is in the
    // keyring); nothing secret reached the log.
    let cache = env.spool.join("state/oauth2-token.json");
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o600);
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(!cached.contains("-rt-"), "{cached}");
    assert_no_secret(&server, &env.log_lines().join("\n"), "the log");
}

#[test]
fn an_expired_token_is_refreshed_and_each_rotated_refresh_token_is_saved() {
    let server = AuthServer::start();
    // Tokens that lapse at once, and a new refresh token each time.
    server.with(|s| {
        s.lifetime = 0;
        s.rotate = true;
    });
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("rotate");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);
    login_with(&env, &server);
    deliver(&env, &server, "one");
    deliver(&env, &server, "two");
    server.with(|s| s.lifetime = 3600);
    deliver(&env, &server, "three");
    deliver(&env, &server, "four");
    let seen: Vec<String> = (0..4)
        .map(|_| {
            sink.event()["auth_token_sha256"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            sha256_hex(&server.access(2)),
            sha256_hex(&server.access(3)),
            sha256_hex(&server.access(4)),
            sha256_hex(&server.access(4)),
        ],
        "a new token whenever the cached one was due, then the cached one"
    );
    // Each refresh presented the refresh token the previous one issued.
    let presented: Vec<String> = server
        .refreshes()
        .iter()
        .map(|r| r.form["refresh_token"].clone())
        .collect();
    let issued = server.with(|s| s.issued_refresh.clone());
    assert_eq!(
        presented,
        issued[..4].to_vec(),
        "login, then three rotations"
    );
    let lines = env.log_lines();
    let notes: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("event=oauth2"))
        .collect();
    assert_eq!(notes.len(), 3, "{lines:?}");
    assert!(
        notes.iter().all(|l| l.contains("refresh token rotated")),
        "{notes:?}"
    );
    assert_no_secret(&server, &lines.join("\n"), "the log");
}

#[test]
fn the_relay_refusing_a_cached_token_gets_one_new_token_and_one_more_auth() {
    for mechanism in ["xoauth2", "oauthbearer"] {
        let server = AuthServer::start();
        let user = unique_user(mechanism);
        // The relay takes only the second token the server will issue.
        let second = format!("{}-at-2", server.with(|s| s.prefix.clone()));
        let sink = Sink::start(&[
            "--listener",
            "127.0.0.1:0=starttls",
            "--auth",
            "users",
            "--auth-user",
            &format!("{user}={second}"),
        ]);
        let env = oauth_env(
            &sink,
            &server,
            &user,
            &format!("auth = \"{mechanism}\""),
            "",
        );
        let _logout = Logout(&env);
        login_with(&env, &server);
        deliver(&env, &server, mechanism);
        let e = sink.event();
        assert_eq!(e["auth_mechanism"], mechanism.to_ascii_uppercase());
        assert_eq!(e["auth_token_sha256"], sha256_hex(&second));
        assert_eq!(
            server.refreshes().len(),
            2,
            "the login's, then one after the refusal"
        );
        let lines = env.log_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("event=oauth2")
                    && l.contains("the relay refused the previous one")),
            "{lines:?}"
        );
        // The new token is cached: the next message needs no refresh.
        deliver(&env, &server, "again");
        assert_eq!(sink.event()["auth_token_sha256"], sha256_hex(&second));
        assert_eq!(server.refreshes().len(), 2);
        assert_no_secret(&server, &env.log_lines().join("\n"), "the log");
    }
}

#[test]
fn a_revoked_grant_defers_with_the_providers_code_and_what_to_do() {
    let server = AuthServer::start();
    server.with(|s| s.lifetime = 0);
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("revoked");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);
    login_with(&env, &server);
    server.with(|s| s.revoked = true);
    let out = env.sendmail(&["-odi", "ops@example.net"], "Subject: revoked\n\nbody\n");
    assert_exit(&out, 75, &env, "revoked grant");
    sink.no_event();
    assert_eq!(
        env.queued().len(),
        1,
        "deferred, never bounced\n{}",
        env.listing()
    );
    let lines = env.log_lines();
    let deferred = lines
        .iter()
        .find(|l| l.contains("event=delivery"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    for wanted in [
        "status=deferred",
        "invalid_grant",
        "AADSTS50173",
        "run `relaymail oauth2 login` again",
        "(oauth2 failed)",
    ] {
        assert!(deferred.contains(wanted), "{wanted}: {deferred}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("event=bounce")),
        "{lines:?}"
    );
    let mailq = env.run("mailq", &[], b"");
    assert!(
        stdout(&mailq).contains("invalid_grant"),
        "{}",
        outcome(&mailq)
    );
    let everything = format!(
        "{}\n{}\n{}",
        lines.join("\n"),
        all_output(&out),
        all_output(&mailq)
    );
    assert_no_secret(&server, &everything, "the log, sendmail and mailq");
}

#[test]
fn two_concurrent_flushes_refresh_once() {
    let server = AuthServer::start();
    server.with(|s| {
        s.lifetime = 0;
        s.rotate = true;
    });
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("race");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);
    login_with(&env, &server);
    // A slow token endpoint: the second flush arrives while the first
    // one's refresh is in flight. With rotation, a second refresh with
    // the same refresh token would be refused.
    server.with(|s| {
        s.lifetime = 3600;
        s.delay = Duration::from_millis(1500);
    });
    for i in 0..2 {
        let out = env.sendmail(
            &["-odq", "ops@example.net"],
            &format!("Subject: race {i}\n\nb\n"),
        );
        assert_exit(&out, 0, &env, "queue");
    }
    let ids: Vec<String> = env.queued().into_iter().map(|q| q.id).collect();
    let flushes: Vec<_> = ids
        .iter()
        .map(|id| {
            env.cmd("relaymail")
                .args(["flush", "--id", id])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in flushes {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "flush: {}", outcome(&out));
    }
    assert_eq!(
        server.refreshes().len(),
        2,
        "the login's and one refresh for both flushes"
    );
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            sink.event()["auth_token_sha256"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tokens, vec![sha256_hex(&server.access(2)); 2]);
    assert!(env.queued().is_empty(), "{}", env.listing());
}

#[test]
fn client_credentials_need_no_sign_in_and_the_secret_file_must_be_private() {
    let server = AuthServer::start();
    server.with(|s| s.client_secret = Some("cs-Very-Secret-42".into()));
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("app");
    let env = oauth_env(&sink, &server, &user, "", "");
    let secret_file = env.path("client-secret");
    std::fs::write(&secret_file, "cs-Very-Secret-42\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{text}flow = \"client_credentials\"\nclient_secret_file = {:?}\n",
            secret_file.display().to_string()
        ),
    )
    .unwrap();
    let _logout = Logout(&env);
    deliver(&env, &server, "as the application");
    let e = sink.event();
    assert_eq!(e["auth_user"], user.as_str());
    assert_eq!(e["auth_token_sha256"], sha256_hex(&server.access(1)));
    assert_eq!(server.grants(), vec!["client_credentials"]);
    let sent = server.with(|s| s.requests[0].form.get("client_secret").cloned());
    assert_eq!(
        sent.as_deref(),
        Some("cs-Very-Secret-42"),
        "the secret goes to the token endpoint only"
    );

    let login = env.run("relaymail", &["oauth2", "login"], b"");
    assert!(login.status.success(), "{}", outcome(&login));
    assert!(
        stdout(&login).contains("needs no sign-in"),
        "{}",
        outcome(&login)
    );

    // Readable by others: refused with the command that fixes it.
    std::fs::remove_file(env.spool.join("state/oauth2-token.json")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.sendmail(&["-odi", "ops@example.net"], "Subject: open\n\nb\n");
    assert_exit(&out, 75, &env, "secret readable by others");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains(&format!("chmod 600 {}", secret_file.display())),
        "{line}"
    );
    assert_no_secret(&server, &env.log_lines().join("\n"), "the log");
}

#[test]
fn a_device_code_that_expires_ends_the_login_with_what_to_do() {
    let server = AuthServer::start();
    server.with(|s| s.device_expired = true);
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("expired");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);
    let out = env.run("relaymail", &["oauth2", "login"], b"");
    assert_eq!(out.status.code(), Some(75), "{}", outcome(&out));
    assert!(
        stderr(&out).contains("refused the sign-in: expired_token")
            && stderr(&out).contains("run relaymail oauth2 login again"),
        "{}",
        outcome(&out)
    );
    let status = env.run("relaymail", &["oauth2", "status"], b"");
    assert_eq!(
        status.status.code(),
        Some(69),
        "nothing held: {}",
        outcome(&status)
    );
    let json = env.run("relaymail", &["oauth2", "status", "--json"], b"");
    assert_eq!(json.status.code(), Some(69), "{}", outcome(&json));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(doc["refresh_token"]["held"], false, "{doc}");
    assert!(doc["access_token"].is_null(), "{doc}");
    assert!(
        stdout(&status).contains("run relaymail oauth2 login"),
        "{}",
        outcome(&status)
    );
}

#[test]
fn token_endpoints_must_be_https_except_on_loopback() {
    let env = Env::with(
        "[smarthost]\nhost = \"smtp.example.com\"\nusername = \"a@example.com\"\n[smarthost.oauth2]\nprovider = \"custom\"\nclient_id = \"c\"\ntoken_endpoint = \"http://login.example.com/token\"\ndevice_authorization_endpoint = \"https://login.example.com/device\"\nscope = \"s\"\n",
    );
    let out = env.run("relaymail", &["config", "check"], b"");
    assert_eq!(out.status.code(), Some(78), "{}", outcome(&out));
    assert!(
        stderr(&out).contains("[smarthost.oauth2] token_endpoint")
            && stderr(&out).contains("allowed only to a loopback address"),
        "{}",
        outcome(&out)
    );
    let typo = Env::with(
        "[smarthost]\nhost = \"smtp.example.com\"\nusername = \"a@example.com\"\n[smarthost.oauth2]\nprovider = \"microsoft\"\nclient_id = \"c\"\ntennant = \"contoso.onmicrosoft.com\"\n",
    );
    let out = typo.run("relaymail", &["config", "check"], b"");
    assert_eq!(out.status.code(), Some(78), "{}", outcome(&out));
    assert!(
        stderr(&out).contains("did you mean \"tenant\""),
        "{}",
        outcome(&out)
    );
}

/// `relaymail doctor --json` against a relay that refuses as Microsoft 365
/// or Gmail do: each refusal is explained with the exact change to make.
#[test]
fn doctor_explains_the_providers_refusals() {
    let server = AuthServer::start();
    let user = unique_user("doctor");
    let cases: [(&str, &str, &str, &str, &str, &str); 7] = [
        ("XOAUTH2", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "250 OK", "250 OK", "auth", "Set-CASMailbox"),
        ("XOAUTH2", "535 5.7.3 Authentication unsuccessful", "250 OK", "250 OK", "auth", "Add-MailboxPermission"),
        ("XOAUTH2", "534 5.7.9 Application-specific password required.", "250 OK", "250 OK", "auth", "app password"),
        ("XOAUTH2", "535 5.7.8 Username and Password not accepted.", "250 OK", "250 OK", "auth", "https://mail.google.com/"),
        ("XOAUTH2", "235 2.7.0 Accepted", "530 5.7.57 Client not authenticated to send mail.", "250 OK", "send", "port 587"),
        ("XOAUTH2", "235 2.7.0 Accepted", "250 OK", "554 5.2.252 SendAsDenied; a@test.example not allowed to send as root@host", "send", "[rewrite] sender"),
        ("PLAIN LOGIN", "550 5.7.30 Basic authentication is not supported for Client Submission.", "250 OK", "250 OK", "auth", "[smarthost.oauth2]"),
    ];
    for (offered, auth_reply, mail_reply, final_reply, step, fix) in cases {
        let relay = ScriptedRelay::start(offered, auth_reply, mail_reply, final_reply);
        let basic = offered.contains("PLAIN");
        let env = if basic {
            let env = Env::new();
            let password = env.path("password");
            std::fs::write(&password, "pw\n").unwrap();
            std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
            let text = std::fs::read_to_string(&env.config).unwrap();
            std::fs::write(
                &env.config,
                format!(
                    "{text}\n[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nallow_cleartext_auth = true\nusername = {user:?}\npassword_file = {:?}\n",
                    relay.port,
                    password.display().to_string()
                ),
            )
            .unwrap();
            env
        } else {
            let env = Env::new();
            let text = std::fs::read_to_string(&env.config).unwrap();
            std::fs::write(
                &env.config,
                format!(
                    "{text}\n[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nallow_cleartext_auth = true\nusername = {user:?}\n{}",
                    relay.port,
                    server.section("")
                ),
            )
            .unwrap();
            login_with(&env, &server);
            env
        };
        let _logout = Logout(&env);
        let out = env.run(
            "relaymail",
            &["doctor", "--json", "--send-to", "ops@example.net"],
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(69),
            "{auth_reply}: {}",
            outcome(&out)
        );
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let failed = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == "FAIL" && c["step"] == step)
            .unwrap_or_else(|| panic!("no FAIL at {step}: {doc}"));
        assert!(
            failed["fix"].as_str().unwrap_or("").contains(fix),
            "{auth_reply} {final_reply}: {doc}"
        );
        if !basic {
            assert!(
                doc["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["step"] == "oauth2" && c["status"] == "OK"),
                "{doc}"
            );
        }
        assert_no_secret(&server, &all_output(&out), "doctor");
    }
}

/// A bare SMTP client: one command, one (possibly multi-line) reply.
struct Raw {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut raw = Raw { stream, reader };
        assert!(raw.reply().starts_with("220 "));
        raw
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        use std::io::Write;
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

#[test]
fn the_sink_takes_xoauth2_and_oauthbearer_and_records_the_user_and_a_token_digest() {
    use relaymail::message::base64::encode;
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let cases = [
        (
            "OAUTHBEARER",
            "n,a=ups=2C01@lab,\x01host=sink\x01port=25\x01auth=Bearer ya29.bearer-one\x01\x01",
            "ups,01@lab",
            "ya29.bearer-one",
        ),
        (
            "XOAUTH2",
            "user=bmc@lab\x01auth=Bearer ya29.bearer-two\x01\x01",
            "bmc@lab",
            "ya29.bearer-two",
        ),
    ];
    for (mechanism, response, user, token) in cases {
        let mut c = Raw::connect(sink.port(0));
        let ehlo = c.cmd("EHLO device");
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"),
            "{ehlo}"
        );
        // Without an initial response: the 334 challenge, then the answer.
        assert!(c.cmd(&format!("AUTH {mechanism}")).starts_with("334 "));
        assert!(
            c.cmd(&encode(response.as_bytes())).starts_with("235 "),
            "{mechanism}"
        );
        assert!(c.cmd("MAIL FROM:<dev@lab>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<root@lab>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        assert!(c.cmd("Subject: t\r\n\r\nb\r\n.").starts_with("250"));
        let e = sink.event();
        assert_eq!(e["auth_user"], user);
        assert_eq!(e["auth_mechanism"], mechanism);
        assert_eq!(e["auth_token_sha256"], sha256_hex(token));
        let index =
            std::fs::read_to_string(sink.dir.path().join("state/sink-index.jsonl")).unwrap();
        assert!(
            !index.contains(token),
            "the index keeps no usable token: {index}"
        );
    }

    // `users` mode: a wrong token gets Gmail's answer, an error document
    // in a 334 first, then 535 once the client has answered it.
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "users",
        "--auth-user",
        "ups@lab=ya29.right",
    ]);
    let mut c = Raw::connect(sink.port(0));
    c.cmd("EHLO device");
    let wrong = encode(b"n,a=ups@lab,\x01auth=Bearer ya29.wrong\x01\x01");
    let challenge = c.cmd(&format!("AUTH OAUTHBEARER {wrong}"));
    assert!(challenge.starts_with("334 "), "{challenge}");
    assert!(c.cmd("AQ==").starts_with("535 5.7.8"));
    let right = encode(b"n,a=ups@lab,\x01auth=Bearer ya29.right\x01\x01");
    assert!(c
        .cmd(&format!("AUTH OAUTHBEARER {right}"))
        .starts_with("235 "));
}

/// System mode: only root signs in; the tokens live in the spool's state
/// directory, which no user can enter; any user's delivery (through the
/// setgid binary) refreshes them, and the next user's finds the rotated
/// refresh token.
#[test]
fn system_mode_keeps_the_tokens_where_no_user_reaches_and_any_delivery_refreshes_them() {
    use common::system::{Host, ALICE};
    let server = AuthServer::start();
    server.with(|s| {
        s.lifetime = 0;
        s.rotate = true;
    });
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let sink_cert = sink.dir.path().join("state/sink-cert.pem");
    let client_id = server.with(|s| s.client_id.clone());
    let config = format!(
        "hostname = \"host.test.example\"\n[smarthost]\nhost = \"localhost\"\nport = {}\nca_file = \"/etc/relaymail/sink-cert.pem\"\nusername = \"alerts@test.example\"\n[smarthost.oauth2]\nprovider = \"custom\"\nclient_id = {client_id:?}\ntoken_endpoint = {:?}\ndevice_authorization_endpoint = {:?}\nscope = \"smtp.send\"\nca_file = \"/etc/relaymail/oauth2-ca.pem\"\n[rewrite]\naliases_file = \"\"\n[log]\nsyslog = false\n",
        sink.port(0),
        server.url("/token"),
        server.url("/devicecode"),
    );
    let Some(host) = Host::new(&config) else {
        return;
    };
    host.install(
        "sink-cert.pem",
        &std::fs::read(&sink_cert).unwrap(),
        0,
        0o644,
    );
    host.install(
        "oauth2-ca.pem",
        &std::fs::read(&server.ca_file).unwrap(),
        0,
        0o644,
    );
    let token = server.mint_refresh_token();
    let login = format!("printf '%s\\n' {token} | relaymail oauth2 login --refresh-token-stdin");
    let refused = host.shell("alice", &login);
    assert_eq!(refused.status.code(), Some(77), "{}", outcome(&refused));
    assert!(
        stderr(&refused).contains("as root"),
        "{}",
        outcome(&refused)
    );
    assert_eq!(
        server.refreshes().len(),
        0,
        "a user's login never reaches the provider"
    );

    let out = host.shell("root", &login);
    assert!(out.status.success(), "{}", outcome(&out));
    let state = host.path("spool/state");
    let cache = state.join("oauth2-token.json");
    let meta = |p: &std::path::Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(
        meta(&state),
        (0, host.gid, 0o2770),
        "made by root, like the spool"
    );
    assert_eq!(meta(&cache), (0, host.gid, 0o640));
    let issued = server.with(|s| s.issued_refresh.clone());
    assert!(
        std::fs::read_to_string(&cache)
            .unwrap()
            .contains(&issued[1]),
        "system mode keeps the (rotated) refresh token in the state file"
    );

    // Alice's mail: her setgid delivery refreshes the lapsed token.
    let send = "printf 'Subject: cron\\n\\nb\\n' | sendmail -odi ops@example.net";
    let out = host.shell("alice", send);
    assert!(out.status.success(), "{}", outcome(&out));
    assert_eq!(
        sink.event()["auth_token_sha256"],
        sha256_hex(&server.access(2))
    );
    assert_eq!(meta(&cache).1, host.gid);
    assert_eq!(meta(&cache).2, 0o640);
    assert_eq!(meta(&cache).0, ALICE, "rewritten by her delivery");
    // ... yet she cannot read it, nor reach the state directory.
    let peek = host.shell(
        "alice",
        "cat /var/spool/relaymail/state/oauth2-token.json; ls /var/spool/relaymail/state",
    );
    assert!(!peek.status.success(), "{}", outcome(&peek));
    assert!(
        stderr(&peek).contains("Permission denied"),
        "{}",
        outcome(&peek)
    );
    let status = host.shell("alice", "relaymail oauth2 status");
    assert!(status.status.success(), "{}", outcome(&status));
    assert!(
        stdout(&status)
            .contains("a refresh token is held in /var/spool/relaymail/state/oauth2-token.json"),
        "{}",
        outcome(&status)
    );
    let everything = format!(
        "{}{}{}",
        all_output(&peek),
        all_output(&status),
        all_output(&out)
    );
    assert_no_secret(&server, &everything, "alice's view");

    // Bob's delivery finds the refresh token Alice's rotation left.
    let out = host.shell("bob", send);
    assert!(out.status.success(), "{}", outcome(&out));
    assert_eq!(
        sink.event()["auth_token_sha256"],
        sha256_hex(&server.access(3))
    );
    let presented: Vec<String> = server
        .refreshes()
        .iter()
        .map(|r| r.form["refresh_token"].clone())
        .collect();
    let issued = server.with(|s| s.issued_refresh.clone());
    assert_eq!(
        presented,
        issued[..3].to_vec(),
        "login, Alice's rotation, Bob's"
    );
}

/// Moves every time in the token cache `secs` into the past: a host on
/// which no mail went for that long.
fn age_cache(env: &Env, secs: i64) {
    let path = env.spool.join("state/oauth2-token.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["obtained_at", "expires_at", "refresh_saved_at", "login_at"] {
        if let Some(t) = doc[key].as_i64() {
            doc[key] = serde_json::json!(t - secs);
        }
    }
    std::fs::write(&path, doc.to_string()).unwrap();
}

#[test]
fn the_timers_run_keeps_an_idle_hosts_refresh_token_in_use() {
    let server = AuthServer::start();
    server.with(|s| s.rotate = true);
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("idle");
    let env = oauth_env(&sink, &server, &user, "", "");
    let _logout = Logout(&env);
    login_with(&env, &server);
    let timer = || {
        let out = env.run("relaymail", &["flush", "--due"], b"");
        assert!(out.status.success(), "{}", outcome(&out));
        assert_no_secret(&server, &all_output(&out), "flush --due");
    };
    timer();
    assert_eq!(
        server.refreshes().len(),
        1,
        "a token used today is left alone"
    );
    age_cache(&env, 8 * 86_400);
    timer();
    let refreshes = server.refreshes();
    assert_eq!(
        refreshes.len(),
        2,
        "a week unused: renewed by the timer's run"
    );
    let issued = server.with(|s| s.issued_refresh.clone());
    assert_eq!(
        refreshes[1].form["refresh_token"], issued[1],
        "the one login stored"
    );
    timer();
    assert_eq!(server.refreshes().len(), 2, "and then left alone again");
    let lines = env.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=oauth2") && l.contains("refresh token rotated")),
        "{lines:?}"
    );
    // Revoked while idle: the timer's run says so in the log, before any
    // mail needs the token, and still succeeds.
    age_cache(&env, 8 * 86_400);
    server.with(|s| s.revoked = true);
    timer();
    let lines = env.log_lines();
    let warning = lines
        .iter()
        .find(|l| l.contains("could not be renewed"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        warning.contains("invalid_grant") && warning.contains("relaymail oauth2 login"),
        "{warning}"
    );
    assert_no_secret(&server, &lines.join("\n"), "the log");
}

#[test]
fn a_client_secret_in_the_keyring_and_a_proxy_reach_the_token_endpoint() {
    let server = AuthServer::start();
    let client_id = unique_user("app").replace('@', ".");
    server.with(|s| {
        s.client_id = client_id.clone();
        s.client_secret = Some("cs-Keyring-Secret-7".into());
    });
    let proxy = ConnectProxy::start();
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let user = unique_user("proxied");
    let env = oauth_env(
        &sink,
        &server,
        &user,
        "",
        &format!(
            "flow = \"client_credentials\"\nclient_secret = \"keyring\"\nproxy = \"http://127.0.0.1:{}\"",
            proxy.port
        ),
    );
    let account = format!("oauth2-client:{client_id}");
    struct Clear<'a>(&'a Env, &'a str);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(
                "relaymail",
                &["credentials", "clear", "--account", self.1],
                b"",
            );
        }
    }
    let _clear = Clear(&env, &account);
    // Before the secret is stored: deferred, with the command to store it.
    let out = env.sendmail(&["-odi", "ops@example.net"], "Subject: early\n\nb\n");
    assert_exit(&out, 75, &env, "no client secret yet");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains(&format!("relaymail credentials set --account {account}")),
        "{line}"
    );
    let set = env.run(
        "relaymail",
        &["credentials", "set", "--stdin", "--account", &account],
        b"cs-Keyring-Secret-7\n",
    );
    assert!(set.status.success(), "{}", outcome(&set));
    assert!(
        !stdout(&set).contains("note:"),
        "the configuration uses it: {}",
        outcome(&set)
    );
    let flush = env.run("relaymail", &["flush"], b"");
    assert!(
        flush.status.success(),
        "{}\n{:?}",
        outcome(&flush),
        env.log_lines()
    );
    let e = sink.event();
    assert_eq!(e["auth_token_sha256"], sha256_hex(&server.access(1)));
    assert_eq!(server.grants(), vec!["client_credentials"]);
    assert_eq!(
        *proxy.tunnels.lock().unwrap(),
        vec![format!("127.0.0.1:{}", server.port)],
        "the token request went through the proxy"
    );
    let everything = format!(
        "{}{}{}",
        env.log_lines().join("\n"),
        all_output(&set),
        all_output(&flush)
    );
    assert_no_secret(&server, &everything, "the log and the commands");
}
