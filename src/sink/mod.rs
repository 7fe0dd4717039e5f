//! The receive-only SMTP sink (`relaymail sink`): accepts mail on the
//! configured listeners and stores it. It never relays: nothing here, or
//! below, opens an outbound connection, and it does not use `relay`,
//! `spool` or `creds`.
//!
//! One thread per connection, at most `max_connections` at once and
//! `max_connections_per_client` from one address (more get 421 4.3.2, so
//! one client cannot take every slot); every command line, DATA line and TLS handshake must arrive
//! whole within the command timeout and every session end within its total
//! deadline (both enforced inside each read, not between lines), and every
//! line has a length limit, so a slow or hostile client can hold neither
//! unbounded memory nor threads.

pub mod conn;
pub mod events;
pub mod session;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
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
    /// Every bound listener and its mode, so that a failed handshake's
    /// log line can name the listener a client belongs on.
    pub listeners: Vec<(String, SinkTls)>,
    /// The certificate file TLS listeners present, for those log lines.
    pub certificate: String,
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
        // The generated certificate and the index are written there
        // after the switch.
        crate::privilege::give_dir(&settings.state_dir, user)?;
    }
    let tls_config = |source| {
        tls::server_config(source, settings.tls_min_version)
            .map_err(|e| Failure::new(Sysexit::Config, format!("sink TLS: {e}")))
    };
    let generated = || tls::Source::Generated {
        dir: &settings.state_dir,
        hostname,
    };
    // A certificate from files is read now, while the sink may still be
    // root (its key may be root's alone). A generated one belongs in the
    // state directory, which is the [sink] user's: it is made (and on
    // later starts read back) by that user after the switch, since root
    // without CAP_DAC_OVERRIDE (the packaged unit, or SELinux's sink
    // domain) may not write into another user's 0750 directory.
    let wants_tls = settings.listeners.iter().any(|l| l.tls != SinkTls::None);
    let mut tls = match (&settings.cert_file, &settings.key_file) {
        _ if !wants_tls => None,
        (Some(cert), Some(key)) => Some(tls_config(tls::Source::Files { cert, key })?),
        _ if user.is_none() => Some(tls_config(generated())?),
        _ => None,
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
    if wants_tls && tls.is_none() {
        tls = Some(tls_config(generated())?);
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
    let listeners = bound
        .iter()
        .map(|(socket, listener)| {
            let addr = socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| listener.addr.to_string());
            (addr, listener.tls)
        })
        .collect();
    let certificate = settings
        .cert_file
        .clone()
        .filter(|_| settings.key_file.is_some())
        .unwrap_or_else(|| settings.state_dir.join("sink-cert.pem"))
        .display()
        .to_string();
    let shared = Arc::new(Shared {
        hostname: hostname.to_string(),
        settings,
        store,
        tls,
        events,
        listeners,
        certificate,
    });
    let slots = Arc::new(Slots::new(
        shared.settings.max_connections,
        shared.settings.per_client_limit(),
    ));
    let threads: Vec<_> = bound
        .into_iter()
        .map(|(socket, listener)| {
            let shared = shared.clone();
            let slots = slots.clone();
            std::thread::spawn(move || accept_loop(&shared, &socket, listener.tls, &slots))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(Sysexit::Ok)
}

fn accept_loop(shared: &Arc<Shared>, socket: &TcpListener, tls: SinkTls, slots: &Arc<Slots>) {
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
        let Ok(peer) = tcp.peer_addr() else { continue };
        let slot = match Slots::take(slots, peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                refuse(shared, tcp, peer, full);
                continue;
            }
        };
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

/// Which connection limit a new connection would exceed.
#[derive(Debug, PartialEq, Eq)]
enum Full {
    /// `max_connections`: the sink as a whole.
    Total(usize),
    /// `max_connections_per_client`: this client address.
    Client(usize),
}

/// Connections open now, in all and per client address.
struct Slots {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only addresses with a connection open: at most `max_total` entries.
    by_client: HashMap<IpAddr, usize>,
}

impl Slots {
    fn new(max_total: usize, max_per_client: usize) -> Slots {
        Slots {
            max_total,
            max_per_client,
            open: Mutex::new(Open::default()),
        }
    }

    /// A slot for a connection from `ip`, or the limit it would exceed.
    /// An IPv4-mapped IPv6 address (a [::] listener's IPv4 client) counts
    /// as its IPv4 address, so two listeners cannot double one's share.
    fn take(slots: &Arc<Slots>, ip: IpAddr) -> Result<Slot, Full> {
        let ip = ip.to_canonical();
        let mut open = slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= slots.max_total {
            return Err(Full::Total(slots.max_total));
        }
        let mine = open.by_client.entry(ip).or_insert(0);
        if *mine >= slots.max_per_client {
            return Err(Full::Client(slots.max_per_client));
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            slots: slots.clone(),
            ip,
        })
    }
}

/// Frees a connection slot when its session ends, however it ends.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_client.get_mut(&self.ip) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_client.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over a limit with 421 4.3.2 naming the reason,
/// and logs it.
fn refuse(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr, full: Full) {
    let host = &shared.hostname;
    let ip = peer.ip().to_canonical();
    let (reply, reason) = match full {
        Full::Total(max) => (
            format!("421 4.3.2 {host} Error: too many connections, try again later"),
            format!("max_connections ({max}) reached"),
        ),
        Full::Client(max) => (
            format!("421 4.3.2 {host} Error: too many connections from {ip}, try again later"),
            format!("max_connections_per_client ({max}) reached for {ip}"),
        ),
    };
    shared.events.refused_because(peer, &reply, &reason);
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.write_all(format!("{reply}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_address_and_in_all() {
        let slots = Arc::new(Slots::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().expect("literal");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("literal");
        let b: IpAddr = "192.0.2.2".parse().expect("literal");
        let first = Slots::take(&slots, a).expect("first from a");
        let second = Slots::take(&slots, mapped).expect("second from a, mapped");
        assert_eq!(
            Slots::take(&slots, a).err(),
            Some(Full::Client(2)),
            "an IPv4-mapped address counts as its IPv4 address"
        );
        let third = Slots::take(&slots, b).expect("another address");
        assert_eq!(Slots::take(&slots, b).err(), Some(Full::Total(3)));
        drop(first);
        let again = Slots::take(&slots, a).expect("a slot freed");
        drop((second, third, again));
        let open = slots.open.lock().expect("not poisoned");
        assert_eq!(open.total, 0);
        assert!(open.by_client.is_empty(), "no entry left behind");
    }
}
