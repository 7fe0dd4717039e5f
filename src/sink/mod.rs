//! The receive-only SMTP sink (`relaymail sink`): accepts mail on the
//! configured listeners and stores it. It never relays: nothing here, or
//! below, opens an outbound connection, and it does not use `relay`,
//! `spool` or `creds`.
//!
//! One thread per connection, at most `max_connections` at once (more get
//! 421 4.3.2); every command line, DATA line and TLS handshake must arrive
//! whole within the command timeout and every session end within its total
//! deadline (both enforced inside each read, not between lines), and every
//! line has a length limit, so a slow or hostile client can hold neither
//! unbounded memory nor threads.

pub mod conn;
pub mod events;
pub mod session;
pub mod store;
pub mod tls;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, SinkTls};
use crate::log::{event, Event, Logger, Severity};
use crate::sysexits::{Failure, Sysexit};

/// What every session of one sink shares.
pub struct Shared {
    pub hostname: String,
    pub settings: config::Sink,
    pub store: Box<dyn store::Store>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub events: events::Events,
}

/// Binds every listener, then serves forever (until killed). A bind or
/// setup failure returns before anything is accepted.
pub fn run(hostname: &str, settings: config::Sink, log: Logger) -> Result<Sysexit, Failure> {
    let spec = store::Spec::parse(&settings.store)
        .map_err(|e| Failure::new(Sysexit::Config, format!("[sink] store: {e}")))?;
    let user = settings
        .user
        .as_deref()
        .map(crate::privilege::service_user)
        .transpose()?;
    if let Some(user) = &user {
        // The certificate is generated there as root, and the index is
        // written there after the switch.
        crate::privilege::give_dir(&settings.state_dir, user)?;
    }
    let tls = if settings.listeners.iter().any(|l| l.tls != SinkTls::None) {
        let source = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => tls::Source::Files { cert, key },
            _ => tls::Source::Generated {
                dir: &settings.state_dir,
                hostname,
            },
        };
        Some(
            tls::server_config(source, settings.tls_min_version)
                .map_err(|e| Failure::new(Sysexit::Config, format!("sink TLS: {e}")))?,
        )
    } else {
        None
    };
    let mut bound = Vec::new();
    for listener in &settings.listeners {
        let socket = TcpListener::bind(listener.addr).map_err(|e| {
            let (exit, hint) = match e.kind() {
                std::io::ErrorKind::PermissionDenied => (Sysexit::NoPerm, "; ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)"),
                std::io::ErrorKind::AddrInUse => (Sysexit::OsErr, "; another server listens there (ss -ltnp shows which); note that [::] also covers IPv4"),
                _ => (Sysexit::OsErr, ""),
            };
            Failure::new(exit, format!("cannot listen on {}: {e}{hint}", listener.addr))
        })?;
        bound.push((socket, listener.clone()));
    }
    if let Some(user) = &user {
        crate::privilege::become_user(user)?;
    }
    let store = store::open(&spec, &settings.state_dir).map_err(|e| {
        Failure::new(
            crate::sysexits::for_store_error(&e),
            format!("sink store {spec}: {e}"),
        )
    })?;
    let events = events::Events::open(&settings.state_dir, log)
        .map_err(|e| Failure::new(Sysexit::CantCreate, format!("sink state directory: {e}")))?;
    for (socket, listener) in &bound {
        let mode = match listener.tls {
            SinkTls::None => "plain",
            SinkTls::Starttls => "STARTTLS",
            SinkTls::Implicit => "implicit TLS",
        };
        let addr = socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        crate::log::stderr(&format!(
            "relaymail sink: listening on {addr} ({mode}), storing to {spec}"
        ));
        events.log(
            Severity::Info,
            &Event::new(event::SINK_LISTENING)
                .field("addr", &addr)
                .field("tls", mode)
                .field("store", &spec),
        );
    }
    let shared = Arc::new(Shared {
        hostname: hostname.to_string(),
        settings,
        store,
        tls,
        events,
    });
    let active = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = bound
        .into_iter()
        .map(|(socket, listener)| {
            let shared = shared.clone();
            let active = active.clone();
            std::thread::spawn(move || accept_loop(&shared, &socket, listener.tls, &active))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(Sysexit::Ok)
}

fn accept_loop(
    shared: &Arc<Shared>,
    socket: &TcpListener,
    tls: SinkTls,
    active: &Arc<AtomicUsize>,
) {
    for incoming in socket.incoming() {
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                // Out of file descriptors or similar: back off, keep serving.
                shared.events.log(
                    Severity::Warning,
                    &Event::new(event::SINK_REFUSED).field("reason", e),
                );
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= shared.settings.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(&shared.hostname, tcp);
            continue;
        }
        let slot = Slot(active.clone());
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let _slot = slot;
                session::serve(&shared, tcp, tls);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Frees a connection slot when its session ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn refuse_busy(hostname: &str, mut tcp: TcpStream) {
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.write_all(
        format!("421 4.3.2 {hostname} Error: too many connections, try again later\r\n").as_bytes(),
    );
}
