//! `relaymail flush` (= `sendmail -q`), `flush --due` (the timer) and the
//! delivery of one message after `sendmail -odb/-odi`: every selected
//! message goes to the smarthost over one reused session (RSET between
//! messages). Each message is locked while it is delivered, so concurrent
//! flushes never send the same message twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::log::{event, Event, Logger, Severity};
use crate::relay::{ConnectionFailure, Outcome, RecipientResult, Session};
use crate::spool::{self, Envelope, QueueId, Spool, Status};
use crate::sysexits::{Failure, Sysexit};

/// Seconds to wait after the Nth failed attempt; the last value repeats.
const BACKOFF: [u64; 5] = [60, 300, 900, 1800, 3600];

#[derive(Default)]
pub struct Options {
    /// Only messages whose next attempt is due (the periodic run).
    pub due_only: bool,
    /// Only these messages.
    pub ids: Vec<QueueId>,
}

/// What a run did, message by message.
#[derive(Default, Debug)]
pub struct Summary {
    pub sent: usize,
    pub deferred: usize,
    pub bounced: usize,
    pub busy: usize,
}

impl Summary {
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

pub fn flush(config: &Config, options: &Options, log: &mut Logger) -> Result<Summary, Failure> {
    let spool = Spool::open(&config.spool_dir, config.mode)?;
    if let Ok(removed) = spool.clean_orphans(true) {
        removed
            .iter()
            .for_each(|o| log.info(&super::orphan_event(o)));
    }
    let mut ids: Vec<QueueId> = if options.ids.is_empty() {
        spool
            .list()?
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| QueueId::parse(&e.id))
            .collect()
    } else {
        options.ids.clone()
    };
    ids.sort();
    // Bounces queued during this run are delivered in it too.
    let mut ids: std::collections::VecDeque<QueueId> = ids.into();
    let mut summary = Summary::default();
    if ids.is_empty() {
        return Ok(summary);
    }
    let Some(host) = &config.smarthost else {
        return Err(Failure::new(
            Sysexit::Config,
            "no [smarthost] is configured, so queued mail cannot be delivered; add one (see sendmail.example.toml)",
        ));
    };
    let secret = crate::creds::load(config)?;
    let mut session: Option<Session> = None;
    // After a connection-level failure, the rest of this run is deferred
    // with the same reason instead of hammering a dead relay.
    let mut relay_down: Option<ConnectionFailure> = None;
    while let Some(id) = ids.pop_front() {
        let locked = match spool.lock(&id) {
            Ok(l) => l,
            Err(spool::Error::Busy(_)) => {
                summary.busy += 1;
                continue;
            }
            Err(spool::Error::NotFound(_)) => continue,
            Err(e) => {
                log.log(
                    Severity::Warning,
                    &Event::new(event::REJECTED).id(&id).field("reason", &e),
                );
                continue;
            }
        };
        let mut env = locked.envelope()?;
        if env.held || (options.due_only && env.next_attempt.is_some_and(|t| t > now())) {
            continue;
        }
        let pending: Vec<usize> = env
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.status, Status::Pending | Status::Deferred))
            .map(|(i, _)| i)
            .collect();
        if pending.is_empty() {
            locked.remove()?;
            continue;
        }
        // Past [queue] max_lifetime: every pending recipient fails now.
        let age = now() - env.created;
        if age >= i64::try_from(config.queue.max_lifetime.as_secs()).unwrap_or(i64::MAX) {
            let reason = format!(
                "expired: not delivered within {}s ([queue] max_lifetime); last error: {}",
                config.queue.max_lifetime.as_secs(),
                env.last_error.as_deref().unwrap_or("none")
            );
            log.log(
                Severity::Warning,
                &Event::new(event::EXPIRED)
                    .id(&id)
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
            let bounce = conclude(
                config,
                &spool,
                locked,
                &mut env,
                &pending,
                &results,
                ("none", "none"),
                log,
                &mut summary,
            )?;
            ids.extend(bounce);
            continue;
        }
        let addresses: Vec<String> = pending
            .iter()
            .filter_map(|i| env.recipients.get(*i))
            .map(|r| r.address.clone())
            .collect();
        if session.as_ref().is_some_and(|s| !s.is_usable()) {
            session = None;
        }
        if session.is_none() && relay_down.is_none() {
            match Session::open(host, &config.hostname, secret.as_ref()) {
                Ok(s) => session = Some(s),
                Err(failure) => relay_down = Some(failure),
            }
        }
        let (results, relay, tls) = match (&mut session, &relay_down) {
            (Some(s), _) => {
                let mut file = std::fs::File::open(locked.message_path()).map_err(|e| {
                    Failure::new(
                        Sysexit::IoErr,
                        format!("cannot read queued message {id}: {e}"),
                    )
                })?;
                let relay = s.relay.clone();
                let tls = s.tls;
                match s.send(&env.sender, &addresses, env.size, env.eight_bit, &mut file) {
                    Ok(results) => (results, relay, tls),
                    Err(failure) => {
                        session = None;
                        (every(&addresses, &failure), relay, tls)
                    }
                }
            }
            (None, Some(failure)) => (
                every(&addresses, failure),
                failure.relay.clone(),
                failure.tls,
            ),
            (None, None) => continue,
        };
        // The relay has answered: store that before anything else (a log
        // line, the RSET round trip), so that a kill from here on finds
        // the new state and never sends these recipients again.
        let bounce = conclude(
            config,
            &spool,
            locked,
            &mut env,
            &pending,
            &results,
            (&relay, tls),
            log,
            &mut summary,
        )?;
        ids.extend(bounce);
        if let Some(s) = session.as_mut() {
            s.reset();
        }
    }
    if let Some(s) = session {
        s.quit();
    }
    Ok(summary)
}

/// Ends one attempt on a message: records each recipient's result, queues
/// a DSN for those that bounced, stores the new state (or removes the
/// message when nobody is left), and only then writes the log lines.
/// Returns the DSN's queue ID, to be delivered in the same run.
#[allow(clippy::too_many_arguments)]
fn conclude(
    config: &Config,
    spool: &Spool,
    locked: spool::Locked<'_>,
    env: &mut Envelope,
    pending: &[usize],
    results: &[RecipientResult],
    (relay, tls): (&str, &str),
    log: &mut Logger,
    summary: &mut Summary,
) -> Result<Option<QueueId>, Failure> {
    let (bounced, events) = record(env, pending, results, relay, tls, summary);
    let bounce = send_bounce(
        config,
        spool,
        env,
        &locked.message_path(),
        &bounced,
        relay,
        log,
    );
    if env.pending().next().is_none() {
        locked.remove()?;
    } else {
        locked.update(env)?;
    }
    events
        .iter()
        .for_each(|(severity, e)| log.log(*severity, e));
    Ok(bounce)
}

fn every(addresses: &[String], failure: &ConnectionFailure) -> Vec<RecipientResult> {
    addresses
        .iter()
        .map(|_| RecipientResult {
            outcome: failure.outcome,
            reply: format!("{} ({} failed)", failure.reply, failure.stage),
        })
        .collect()
}

/// Queues a DSN for the recipients that failed in this attempt (none for
/// a bounce, or when there is nobody to tell). Returns its queue ID.
fn send_bounce(
    config: &Config,
    spool: &Spool,
    env: &Envelope,
    message: &std::path::Path,
    bounced: &[usize],
    relay: &str,
    log: &mut Logger,
) -> Option<QueueId> {
    if bounced.is_empty() {
        return None;
    }
    let to = crate::bounce::recipient(config, env)?;
    let failed: Vec<crate::bounce::Failed> = bounced
        .iter()
        .filter_map(|i| env.recipients.get(*i))
        .map(|r| crate::bounce::Failed {
            address: r.address.clone(),
            original: r.original.clone(),
            reply: r.reply.clone().unwrap_or_default(),
        })
        .collect();
    match crate::bounce::queue(config, spool, env, message, &failed, relay, &to) {
        Ok(id) => {
            log.info(
                &Event::new(event::BOUNCE)
                    .id(&env.id)
                    .field("dsn_id", &id)
                    .addr("to", &to)
                    .field("failed", failed.len()),
            );
            Some(id)
        }
        Err(e) => {
            log.log(
                Severity::Error,
                &Event::new(event::BOUNCE).id(&env.id).field("error", e),
            );
            None
        }
    }
}

/// Writes each recipient's outcome into the state. Returns the indices of
/// the recipients that bounced in this attempt and one log line each, to
/// be written once the state is stored.
fn record(
    env: &mut Envelope,
    pending: &[usize],
    results: &[RecipientResult],
    relay: &str,
    tls: &str,
    summary: &mut Summary,
) -> (Vec<usize>, Vec<(Severity, Event)>) {
    let mut bounced = Vec::new();
    let mut events = Vec::new();
    let attempted = now();
    env.attempts += 1;
    env.last_attempt = Some(attempted);
    let delay = Duration::from_secs(u64::try_from(attempted - env.created).unwrap_or(0));
    let mut deferred = false;
    for (index, result) in pending.iter().zip(results) {
        let Some(r) = env.recipients.get_mut(*index) else {
            continue;
        };
        let (status, word) = match result.outcome {
            Outcome::Sent => (Status::Sent, "sent"),
            Outcome::Deferred => (Status::Deferred, "deferred"),
            Outcome::Bounced => (Status::Bounced, "bounced"),
        };
        match result.outcome {
            Outcome::Sent => summary.sent += 1,
            Outcome::Deferred => {
                summary.deferred += 1;
                deferred = true;
            }
            Outcome::Bounced => {
                summary.bounced += 1;
                bounced.push(*index);
            }
        }
        r.status = status;
        r.reply = Some(result.reply.clone());
        let severity = if result.outcome == Outcome::Sent {
            Severity::Info
        } else {
            Severity::Warning
        };
        events.push((
            severity,
            Event::new(event::DELIVERY)
                .id(&env.id)
                .addr("to", &r.address)
                .field("relay", relay)
                .field("tls", tls)
                .field("delay", format!("{}s", delay.as_secs()))
                .field("attempt", env.attempts)
                .field("dsn", dsn(&result.reply, result.outcome))
                .field("status", word)
                .field("reply", &result.reply),
        ));
        if result.outcome != Outcome::Sent {
            env.last_error = Some(result.reply.clone());
        }
    }
    let step = BACKOFF
        .get(usize::try_from(env.attempts.saturating_sub(1)).unwrap_or(usize::MAX))
        .or(BACKOFF.last())
        .copied()
        .unwrap_or(3600);
    env.next_attempt = deferred.then(|| attempted + i64::try_from(step).unwrap_or(3600));
    (bounced, events)
}

/// The enhanced status code in a reply ("250 2.0.0 Ok" -> 2.0.0), else
/// one derived from the outcome.
fn dsn(reply: &str, outcome: Outcome) -> String {
    let found = reply.split_whitespace().nth(1).filter(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    match (found, outcome) {
        (Some(code), _) => code.to_string(),
        (None, Outcome::Sent) => "2.0.0".into(),
        (None, Outcome::Deferred) => "4.0.0".into(),
        (None, Outcome::Bounced) => "5.0.0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_codes() {
        assert_eq!(dsn("250 2.0.0 Ok: queued", Outcome::Sent), "2.0.0");
        assert_eq!(dsn("550 5.1.1 <x>: unknown", Outcome::Bounced), "5.1.1");
        assert_eq!(
            dsn("connection refused (connect failed)", Outcome::Deferred),
            "4.0.0"
        );
    }
}
