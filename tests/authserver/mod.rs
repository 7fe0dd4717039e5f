//! An OAuth2 authorisation server for the tests, on loopback HTTPS with a
//! certificate made at run time (given to relaymail as the oauth2
//! `ca_file`): a token endpoint with the client_credentials,
//! refresh_token and device_code grants, a device authorization endpoint
//! whose codes go through pending and slow_down before they are approved,
//! refresh-token rotation, revocation, a configurable token lifetime and
//! a configurable delay. Tokens are predictable per server
//! (`<prefix>-at-N`, `<prefix>-rt-N`) so that a test can name the token
//! a relay must see; every request is recorded.
//!
//! Also a scripted SMTP relay that answers AUTH with a given refusal, for
//! the doctor's explanations.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub form: HashMap<String, String>,
    pub at: Instant,
}

pub struct State {
    pub prefix: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// `expires_in` of the next access tokens.
    pub lifetime: u64,
    /// Each refresh issues a new refresh token and invalidates the old.
    pub rotate: bool,
    /// Every refresh token is refused (consent revoked).
    pub revoked: bool,
    /// Held before a token request is answered.
    pub delay: Duration,
    /// The answers to the next device-code polls before approval.
    pub device_script: VecDeque<&'static str>,
    /// The device code has expired.
    pub device_expired: bool,
    pub approved: bool,
    /// Send no refresh token with tokens.
    pub no_refresh_token: bool,
    access_counter: u32,
    refresh_counter: u32,
    valid_refresh: HashSet<String>,
    device_codes: HashSet<String>,
    pub issued_access: Vec<String>,
    pub issued_refresh: Vec<String>,
    pub requests: Vec<Request>,
}

pub struct AuthServer {
    pub port: u16,
    pub ca_file: PathBuf,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    pub fn start() -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let ca_file = dir.path().join("authserver-ca.pem");
        std::fs::write(&ca_file, pair.cert.pem()).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(pair.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(pair.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap(),
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let state = Arc::new(Mutex::new(State {
            prefix: format!("tok{}x{nanos}", std::process::id()),
            client_id: "relaymail-test-client".into(),
            client_secret: None,
            lifetime: 3600,
            rotate: false,
            revoked: false,
            delay: Duration::ZERO,
            device_script: VecDeque::new(),
            device_expired: false,
            approved: false,
            no_refresh_token: false,
            access_counter: 0,
            refresh_counter: 0,
            valid_refresh: HashSet::new(),
            device_codes: HashSet::new(),
            issued_access: Vec::new(),
            issued_refresh: Vec::new(),
            requests: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let (s, config) = (s.clone(), config.clone());
                std::thread::spawn(move || serve(tcp, config, s, port));
            }
        });
        AuthServer {
            port,
            ca_file,
            state,
            stop,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The `[smarthost.oauth2]` section for this server.
    pub fn section(&self, extra: &str) -> String {
        let client_id = self.with(|s| s.client_id.clone());
        format!(
            "[smarthost.oauth2]\nprovider = \"custom\"\nclient_id = {client_id:?}\ntoken_endpoint = {:?}\ndevice_authorization_endpoint = {:?}\nscope = \"smtp.send offline_access\"\nca_file = {:?}\n{extra}\n",
            self.url("/token"),
            self.url("/devicecode"),
            self.ca_file.display().to_string()
        )
    }

    /// The grant types of the token requests so far, in order.
    pub fn grants(&self) -> Vec<String> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.path == "/token")
                .map(|r| r.form.get("grant_type").cloned().unwrap_or_default())
                .collect()
        })
    }

    pub fn refreshes(&self) -> Vec<Request> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.form.get("grant_type").map(String::as_str) == Some("refresh_token"))
                .cloned()
                .collect()
        })
    }

    /// A refresh token the server accepts, as if a sign-in had happened
    /// elsewhere (for `relaymail oauth2 login --refresh-token-stdin`).
    pub fn mint_refresh_token(&self) -> String {
        self.with(|s| {
            s.refresh_counter += 1;
            let token = format!("{}-rt-{}", s.prefix, s.refresh_counter);
            s.valid_refresh.insert(token.clone());
            s.issued_refresh.push(token.clone());
            token
        })
    }

    pub fn access(&self, n: usize) -> String {
        self.with(|s| s.issued_access[n - 1].clone())
    }

    /// Every secret the server has handed out or was given, for tests
    /// that check none of them is ever shown.
    pub fn secrets(&self) -> Vec<String> {
        self.with(|s| {
            let mut all: Vec<String> = s
                .issued_access
                .iter()
                .chain(&s.issued_refresh)
                .cloned()
                .collect();
            all.extend(s.device_codes.iter().cloned());
            all.extend(s.client_secret.clone());
            all
        })
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// SHA-256 in hex, as the sink records a bearer token.
pub fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, state: Arc<Mutex<State>>, port: u16) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    // The absolute form ("https://host:port/token"), as a client behind
    // a proxy may send it (RFC 9112 section 3.2.2), names the same path.
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let form = parse_form(&String::from_utf8_lossy(&body));
    let (status, json) = if method != "POST" {
        (405, serde_json::json!({"error": "invalid_request"}))
    } else {
        answer(&state, path, form, port)
    };
    let body = json.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Bad Request" },
        body.len()
    );
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

fn answer(
    state: &Arc<Mutex<State>>,
    path: &str,
    form: HashMap<String, String>,
    port: u16,
) -> (u16, serde_json::Value) {
    let delay = state.lock().unwrap().delay;
    if path == "/token" && !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let mut s = state.lock().unwrap();
    s.requests.push(Request {
        path: path.to_string(),
        form: form.clone(),
        at: Instant::now(),
    });
    let error = |code: &str, description: &str| {
        (
            400,
            serde_json::json!({"error": code, "error_description": description}),
        )
    };
    if form.get("client_id") != Some(&s.client_id) {
        return error("invalid_client", "AADSTS700016: Application not found.");
    }
    if let Some(secret) = &s.client_secret {
        if path == "/token" && form.get("client_secret") != Some(secret) {
            return error(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            );
        }
    }
    match path {
        "/devicecode" => {
            let code = format!("{}-dc-{}", s.prefix, s.device_codes.len() + 1);
            s.device_codes.insert(code.clone());
            (
                200,
                serde_json::json!({
                    "device_code": code,
                    "user_code": "WDJB-MJHT",
                    "verification_uri": format!("https://127.0.0.1:{port}/device"),
                    "expires_in": 600,
                    "interval": 1,
                }),
            )
        }
        "/token" => match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => issue(&mut s, false),
            Some("refresh_token") => {
                let presented = form.get("refresh_token").cloned().unwrap_or_default();
                if s.revoked || !s.valid_refresh.contains(&presented) {
                    return error(
                        "invalid_grant",
                        "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed.\r\nTrace ID: 0000",
                    );
                }
                if s.rotate {
                    s.valid_refresh.remove(&presented);
                }
                let rotate = s.rotate;
                issue(&mut s, rotate)
            }
            Some("urn:ietf:params:oauth:grant-type:device_code") => {
                let code = form.get("device_code").cloned().unwrap_or_default();
                if !s.device_codes.contains(&code) {
                    return error("invalid_grant", "unknown device code");
                }
                if s.device_expired {
                    return error("expired_token", "AADSTS70020: The provided value for the input parameter 'device_code' is not valid.");
                }
                if let Some(next) = s.device_script.pop_front() {
                    return error(next, "");
                }
                if !s.approved {
                    return error("authorization_pending", "");
                }
                s.device_codes.remove(&code);
                issue(&mut s, true)
            }
            _ => error("unsupported_grant_type", ""),
        },
        _ => (404, serde_json::json!({"error": "not_found"})),
    }
}

fn issue(s: &mut State, with_refresh: bool) -> (u16, serde_json::Value) {
    s.access_counter += 1;
    let access = format!("{}-at-{}", s.prefix, s.access_counter);
    s.issued_access.push(access.clone());
    let mut json = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.lifetime,
        "scope": "smtp.send",
    });
    if with_refresh && !s.no_refresh_token {
        s.refresh_counter += 1;
        let refresh = format!("{}-rt-{}", s.prefix, s.refresh_counter);
        s.valid_refresh.insert(refresh.clone());
        s.issued_refresh.push(refresh.clone());
        json["refresh_token"] = serde_json::Value::String(refresh);
    }
    (200, json)
}

fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP CONNECT proxy on loopback that records where each tunnel went.
pub struct ConnectProxy {
    pub port: u16,
    pub tunnels: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (tunnels.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let t = t.clone();
                std::thread::spawn(move || tunnel(client, &t));
            }
        });
        ConnectProxy {
            port,
            tunnels,
            stop,
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn tunnel(client: TcpStream, tunnels: &Mutex<Vec<String>>) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = (&client).write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    tunnels.lock().unwrap().push(target.to_string());
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    let _ = (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
    let mut down_write = client;
    // Bytes the reader already holds go first.
    let buffered = reader.buffer().to_vec();
    let _ = up_write.write_all(&buffered);
    let mut reader = reader.into_inner();
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut down_write);
    let _ = down_write.shutdown(std::net::Shutdown::Write);
    let _ = pump.join();
}

/// A plain SMTP relay on loopback that offers `auth` mechanisms and
/// answers every AUTH with `refusal` (and MAIL/RCPT/DATA with 250/354,
/// the final dot with `final_reply`). Serves connections until dropped.
pub struct ScriptedRelay {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl ScriptedRelay {
    pub fn start(auth: &str, refusal: &str, mail_reply: &str, final_reply: &str) -> ScriptedRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let replies = Arc::new([
            auth.to_string(),
            refusal.to_string(),
            mail_reply.to_string(),
            final_reply.to_string(),
        ]);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let replies = replies.clone();
                std::thread::spawn(move || smtp(tcp, &replies));
            }
        });
        ScriptedRelay { port, stop }
    }
}

impl Drop for ScriptedRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn smtp(tcp: TcpStream, replies: &[String; 4]) {
    let [auth, refusal, mail_reply, final_reply] = replies;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = tcp.try_clone().unwrap();
    let mut reader = BufReader::new(tcp);
    let _ = writer.write_all(b"220 relay.test ESMTP\r\n");
    let mut data = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if data {
            if line == ".\r\n" {
                data = false;
                let _ = writer.write_all(format!("{final_reply}\r\n").as_bytes());
            }
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => format!("250-relay.test\r\n250-AUTH {auth}\r\n250 8BITMIME"),
            "AUTH" => refusal.to_string(),
            "MAIL" => mail_reply.to_string(),
            "RCPT" | "RSET" | "NOOP" => "250 2.0.0 OK".to_string(),
            "DATA" => {
                data = true;
                "354 go ahead".to_string()
            }
            "QUIT" => {
                let _ = writer.write_all(b"221 bye\r\n");
                return;
            }
            _ => "500 5.5.1 unknown".to_string(),
        };
        let _ = writer.write_all(format!("{reply}\r\n").as_bytes());
    }
}
