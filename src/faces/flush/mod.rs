//! `relaymail flush` (= `sendmail -q`), `flush --due` (the timer) and the
//! delivery of one message after `sendmail -odb/-odi`: every selected
//! message goes to the smarthost over one reused session (RSET between
//! messages), and a backlog over a few parallel sessions
//! (`[smarthost] connections`). Each message is locked while it is
//! delivered, so sessions and concurrent flushes never send the same
//! message twice. Background runners are in `runner.rs`; what an
//! attempt's results do to a message's state is in `record.rs`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::creds::Secret;
use crate::log::{event, Event, Logger, Severity};
use crate::relay::{ConnectionFailure, Outcome, RecipientResult, Relay, Session};
use crate::spool::{self, Envelope, QueueId, Spool};
use crate::sysexits::{Failure, Sysexit};

mod record;
mod runner;

use record::{every, record};
pub use runner::{background, runner_at_work};

#[derive(Default)]
pub struct Options {
    /// Only messages whose next attempt is due (the periodic run).
    pub due_only: bool,
    /// Only these messages.
    pub ids: Vec<QueueId>,
    /// A background runner: once the selected messages are done, it keeps
    /// taking due messages queued meanwhile over its open sessions, and
    /// waits this long for more before it ends.
    pub linger: Option<Duration>,
}

/// What a run did, message by message.
#[derive(Default, Debug)]
pub struct Summary {
    pub sent: usize,
    pub deferred: usize,
    pub bounced: usize,
    pub busy: usize,
    /// Of the recipients counted above, those of bounce reports: a run
    /// also delivers the reports it queues.
    pub reports: Reports,
}

/// Recipients of bounce reports, by outcome.
#[derive(Default, Debug)]
pub struct Reports {
    pub sent: usize,
    pub deferred: usize,
    pub bounced: usize,
}

impl Summary {
    /// The messages' own recipients, without those of the bounce reports
    /// the run queued and delivered (what `sendmail -odi` reports on).
    pub fn without_reports(&self) -> Summary {
        Summary {
            sent: self.sent.saturating_sub(self.reports.sent),
            deferred: self.deferred.saturating_sub(self.reports.deferred),
            bounced: self.bounced.saturating_sub(self.reports.bounced),
            busy: self.busy,
            reports: Reports::default(),
        }
    }

    /// sendmail -odi: 0 all sent, 75 something to retry, 69 refused.
    pub fn sysexit(&self) -> Sysexit {
        if self.deferred > 0 || self.busy > 0 {
            Sysexit::TempFail
        } else if self.bounced > 0 {
            Sysexit::Unavailable
        } else {
            Sysexit::Ok
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// With a backlog, one more parallel session per this many messages, up
/// to `[smarthost] connections`: a handful of messages share one session.
const MESSAGES_PER_SESSION: usize = 10;

pub fn flush(config: &Config, options: &Options, log: &mut Logger) -> Result<Summary, Failure> {
    flush_tracked(config, options, log).map(|(summary, _)| summary)
}

/// `flush`, also returning every message the run tried or, as a runner,
/// looked at and left (not those it found locked at the end).
fn flush_tracked(
    config: &Config,
    options: &Options,
    log: &mut Logger,
) -> Result<(Summary, HashSet<QueueId>), Failure> {
    let spool = Spool::open(&config.spool_dir, config.mode)?;
    if let Ok(removed) = spool.clean_orphans(true) {
        removed
            .iter()
            .for_each(|o| log.info(&super::orphan_event(o)));
    }
    // Selected from the envelopes already read: a timer run that finds
    // nothing due ends here, before any credential command runs. Each
    // attempt reads its envelope again under the message's lock.
    let mut ids: Vec<QueueId> = if options.ids.is_empty() {
        let mut ids = Vec::new();
        for entry in spool.list()? {
            match entry {
                Ok(env) if env.held => {}
                Ok(env) if options.due_only && env.next_attempt.is_some_and(|t| t > now()) => {}
                Ok(env) => ids.extend(QueueId::parse(&env.id)),
                // Delivered by another process since the listing.
                Err(spool::Error::NotFound(_)) => {}
                Err(e) => log.log(
                    Severity::Warning,
                    &Event::new(event::REJECTED).field("reason", &e),
                ),
            }
        }
        ids
    } else {
        options.ids.clone()
    };
    ids.sort();
    if ids.is_empty() {
        return Ok((Summary::default(), HashSet::new()));
    }
    let Some(host) = &config.smarthost else {
        return Err(Failure::new(
            Sysexit::Config,
            "no [smarthost] is configured, so queued mail cannot be delivered; add one (see relaymail.toml(5))",
        ));
    };
    let workers = (ids.len() / MESSAGES_PER_SESSION).clamp(1, host.connections);
    let run = Run {
        config,
        options,
        secret: crate::creds::load(config)?,
        relay: Relay::new(host, config.mode),
        spool,
        tried: Mutex::new(ids.iter().cloned().collect()),
        queue: Mutex::new(ids.into()),
        log: Mutex::new(log),
        relay_down: Mutex::new(None),
        live: AtomicUsize::new(0),
        unsynced: AtomicBool::new(false),
        refilling: Mutex::new(()),
        idle_over: AtomicBool::new(false),
        busy: Mutex::new(Vec::new()),
        passed: Mutex::new(HashSet::new()),
    };
    let results: Vec<Result<Summary, Failure>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(|| run.work())).collect();
        let mut results = vec![run.work()];
        results.extend(helpers.into_iter().map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(Failure::new(
                    Sysexit::Software,
                    "a delivery thread failed; messages it held stay queued",
                ))
            })
        }));
        results
    });
    let synced = run.sync_removals();
    let mut total = Summary::default();
    for result in results {
        total.add(&result?);
    }
    synced?;
    let mut seen = std::mem::take(&mut *lock(&run.tried));
    seen.extend(std::mem::take(&mut *lock(&run.passed)));
    // Still locked by someone else at the end: not taken by this run.
    for id in lock(&run.busy).iter() {
        seen.remove(id);
    }
    Ok((total, seen))
}

impl Summary {
    fn add(&mut self, part: &Summary) {
        self.sent += part.sent;
        self.deferred += part.deferred;
        self.bounced += part.bounced;
        self.busy += part.busy;
        self.reports.sent += part.reports.sent;
        self.reports.deferred += part.reports.deferred;
        self.reports.bounced += part.reports.bounced;
    }
}

/// One flush: the messages still to try, shared by its sessions.
struct Run<'a> {
    config: &'a Config,
    options: &'a Options,
    spool: Spool,
    relay: Relay,
    secret: Option<Secret>,
    queue: Mutex<VecDeque<QueueId>>,
    log: Mutex<&'a mut Logger>,
    /// After a connection-level failure while no session is open, the rest
    /// of the run is deferred with the same reason instead of hammering a
    /// dead relay.
    relay_down: Mutex<Option<ConnectionFailure>>,
    /// Sessions open or being opened. When one more cannot be opened
    /// while others are (a relay that limits connections per client),
    /// that worker hands its message back and stops instead.
    live: AtomicUsize,
    /// Every message taken in this run, so that a runner's refill never
    /// takes one twice.
    tried: Mutex<HashSet<QueueId>>,
    /// Removals whose directory fsync is still to come (one for all the
    /// messages of a session, see `sync_removals`).
    unsynced: AtomicBool,
    /// One session looks for newly queued mail at a time.
    refilling: Mutex<()>,
    /// A runner's wait for more mail has run out: its sessions end.
    idle_over: AtomicBool,
    /// Messages a runner found locked, to try again shortly.
    busy: Mutex<Vec<QueueId>>,
    /// Messages a runner's refill read and left (`Scan::pass`).
    passed: Mutex<HashSet<QueueId>>,
}

/// What a worker does after an attempt.
enum Next {
    Continue,
    /// The relay refused one more session while others are open.
    Stop,
}

impl Run<'_> {
    /// One session's loop: take the next message until none is left.
    fn work(&self) -> Result<Summary, Failure> {
        let mut summary = Summary::default();
        let mut session: Option<Session> = None;
        loop {
            // Its own statement: the queue's lock must be released before
            // the attempt, which may queue a bounce.
            let next = lock(&self.queue).pop_front();
            let id = match next {
                Some(id) => id,
                None if self.refill() => continue,
                None => break,
            };
            if let Next::Stop = self.attempt(&id, &mut session, &mut summary)? {
                break;
            }
        }
        self.sync_removals()?;
        if let Some(s) = self.close(&mut session) {
            s.quit();
        }
        Ok(summary)
    }

    /// One directory fsync for the removals since the last one.
    fn sync_removals(&self) -> Result<(), Failure> {
        if self.unsynced.swap(false, Ordering::SeqCst) {
            self.spool.sync_queue()?;
        }
        Ok(())
    }

    /// Removes a finished message; its directory fsync comes with the
    /// session's next `sync_removals`.
    fn finish(&self, locked: spool::Locked<'_>) -> Result<(), Failure> {
        locked.remove_unsynced()?;
        self.unsynced.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Takes the session out of use (it is counted as open until then).
    fn close(&self, session: &mut Option<Session>) -> Option<Session> {
        let closed = session.take();
        if closed.is_some() {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
        closed
    }

    fn attempt(
        &self,
        id: &QueueId,
        session: &mut Option<Session>,
        summary: &mut Summary,
    ) -> Result<Next, Failure> {
        let locked = match self.spool.lock(id) {
            Ok(l) => l,
            Err(spool::Error::Busy(_)) => {
                summary.busy += 1;
                if self.options.linger.is_some() {
                    // Its submitter may still hold it for a moment.
                    lock(&self.busy).push(id.clone());
                }
                return Ok(Next::Continue);
            }
            Err(spool::Error::NotFound(_)) => return Ok(Next::Continue),
            Err(e) => {
                self.log(
                    Severity::Warning,
                    &Event::new(event::REJECTED).id(id).field("reason", &e),
                );
                return Ok(Next::Continue);
            }
        };
        let mut env = locked.envelope()?;
        if env.held || (self.options.due_only && env.next_attempt.is_some_and(|t| t > now())) {
            return Ok(Next::Continue);
        }
        let pending = env.pending_indices();
        if pending.is_empty() {
            self.finish(locked)?;
            return Ok(Next::Continue);
        }
        let max_lifetime = self.config.queue.max_lifetime.as_secs();
        let age = now() - env.created;
        if age >= i64::try_from(max_lifetime).unwrap_or(i64::MAX) {
            // Past [queue] max_lifetime: every pending recipient fails now.
            let reason = format!(
                "expired: not delivered within {max_lifetime}s ([queue] max_lifetime); last error: {}",
                env.last_error.as_deref().unwrap_or("none")
            );
            self.log(
                Severity::Warning,
                &Event::new(event::EXPIRED)
                    .id(id)
                    .field("age", format!("{age}s"))
                    .field("reason", &reason),
            );
            let results: Vec<RecipientResult> = pending
                .iter()
                .map(|_| RecipientResult {
                    outcome: Outcome::Bounced,
                    reply: format!("554 5.4.7 {reason}"),
                })
                .collect();
            self.conclude(
                locked,
                &mut env,
                &pending,
                &results,
                ("none", "none"),
                summary,
            )?;
            return Ok(Next::Continue);
        }
        let addresses: Vec<String> = pending
            .iter()
            .filter_map(|i| env.recipients.get(*i))
            .map(|r| r.address.clone())
            .collect();
        if session.as_ref().is_some_and(|s| !s.is_usable()) {
            self.close(session);
        }
        if session.is_none() && lock(&self.relay_down).is_none() {
            // Counted while it opens, so that a session refused at the
            // same moment knows another may still succeed.
            self.live.fetch_add(1, Ordering::SeqCst);
            let opened = self.relay.open(&self.config.hostname, self.secret.as_ref());
            for note in self.relay.oauth2_notes() {
                self.log(
                    Severity::Info,
                    &Event::new(event::OAUTH2).field("detail", note),
                );
            }
            match opened {
                Ok(s) => *session = Some(s),
                Err(failure) => {
                    let others = self.live.fetch_sub(1, Ordering::SeqCst) - 1;
                    if others > 0 {
                        // Nothing was tried: the message goes back for a
                        // session that works.
                        drop(locked);
                        lock(&self.queue).push_front(id.clone());
                        return Ok(Next::Stop);
                    }
                    *lock(&self.relay_down) = Some(failure);
                }
            }
        }
        let (results, relay, tls) = match session.as_mut() {
            Some(s) => {
                let mut file = locked.body().map_err(|e| {
                    Failure::new(
                        Sysexit::IoErr,
                        format!("cannot read queued message {id}: {e}"),
                    )
                })?;
                let (relay, tls) = (s.relay.clone(), s.tls.clone());
                match s.send(&env.sender, &addresses, env.size, env.eight_bit, &mut file) {
                    Ok(results) => (results, relay, tls),
                    Err(failure) => {
                        self.close(session);
                        (every(&addresses, &failure), relay, tls)
                    }
                }
            }
            None => match lock(&self.relay_down).clone() {
                Some(failure) => (
                    every(&addresses, &failure),
                    failure.relay.clone(),
                    failure.tls.clone(),
                ),
                // Another session found the relay down after this one
                // had checked: nothing was tried, so nothing is recorded.
                None => return Ok(Next::Continue),
            },
        };
        // The relay has answered: store that before anything else (a log
        // line, the RSET round trip), so that a kill from here on finds
        // the new state and never sends these recipients again.
        self.conclude(
            locked,
            &mut env,
            &pending,
            &results,
            (&relay, &tls),
            summary,
        )?;
        if session.as_mut().is_some_and(|s| !s.reset()) {
            self.close(session);
        }
        Ok(Next::Continue)
    }

    /// Ends one attempt on a message: records each recipient's result,
    /// stores the new state, queues a DSN for those that bounced
    /// (delivered later in this run), removes the message when nobody is
    /// left, and only then writes the log lines.
    fn conclude(
        &self,
        locked: spool::Locked<'_>,
        env: &mut Envelope,
        pending: &[usize],
        results: &[RecipientResult],
        (relay, tls): (&str, &str),
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        let (bounced, events) = record(env, pending, results, relay, tls, summary);
        // The new state first: a kill after this never sends an accepted
        // recipient again (at worst a DSN is lost, never a second copy).
        let done = env.pending().next().is_none();
        if !done || !bounced.is_empty() {
            locked.update(env)?;
        }
        let (bounce, bounce_event) = match locked.body() {
            Ok(mut body) => self.send_bounce(env, &mut body, &bounced, relay),
            Err(_) => self.send_bounce(env, &mut std::io::empty(), &bounced, relay),
        };
        if done {
            self.finish(locked)?;
        }
        // The recipients' lines first, then the report queued for those
        // that bounced.
        events
            .iter()
            .chain(bounce_event.as_ref())
            .for_each(|(severity, e)| self.log(*severity, e));
        if let Some(id) = bounce {
            lock(&self.tried).insert(id.clone());
            lock(&self.queue).push_back(id);
        }
        Ok(())
    }

    /// Queues a DSN for the recipients that failed in this attempt (none
    /// for a bounce, or when there is nobody to tell). Returns its ID and
    /// the log line to write after the recipients' own.
    fn send_bounce(
        &self,
        env: &Envelope,
        message: &mut dyn std::io::Read,
        bounced: &[usize],
        relay: &str,
    ) -> (Option<QueueId>, Option<(Severity, Event)>) {
        if bounced.is_empty() {
            return (None, None);
        }
        let Some(to) = crate::bounce::recipient(self.config, env) else {
            return (None, None);
        };
        let failed: Vec<crate::bounce::Failed> = bounced
            .iter()
            .filter_map(|i| env.recipients.get(*i))
            .map(|r| crate::bounce::Failed {
                address: r.address.clone(),
                original: r.original.clone(),
                reply: r.reply.clone().unwrap_or_default(),
            })
            .collect();
        match crate::bounce::queue(self.config, &self.spool, env, message, &failed, relay, &to) {
            Ok(id) => {
                let line = Event::new(event::BOUNCE)
                    .id(&env.id)
                    .field("dsn_id", &id)
                    .addr("to", &to)
                    .field("failed", failed.len());
                (Some(id), Some((Severity::Info, line)))
            }
            Err(e) => (
                None,
                Some((
                    Severity::Error,
                    Event::new(event::BOUNCE).id(&env.id).field("error", e),
                )),
            ),
        }
    }

    fn log(&self, severity: Severity, event: &Event) {
        lock(&self.log).log(severity, event);
    }
}

/// A poisoned lock only means another session panicked; its data (a
/// queue of IDs, a logger) is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
