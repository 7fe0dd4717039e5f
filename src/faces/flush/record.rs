//! What an attempt's results do to a message's state: each recipient's
//! outcome, the enhanced status code kept for a bounce.

use std::time::Duration;

use super::{now, Summary};
use crate::log::{event, Event, Severity};
use crate::relay::{ConnectionFailure, Outcome, RecipientResult};
use crate::spool::{Envelope, Status};

/// Seconds to wait after the Nth failed attempt; the last value repeats.
const BACKOFF: [u64; 5] = [60, 300, 900, 1800, 3600];

pub(super) fn every(addresses: &[String], failure: &ConnectionFailure) -> Vec<RecipientResult> {
    addresses
        .iter()
        .map(|_| RecipientResult {
            outcome: failure.outcome,
            reply: format!("{} ({} failed)", failure.reply, failure.stage),
        })
        .collect()
}

/// Writes each recipient's outcome into the state. Returns the indices of
/// the recipients that bounced in this attempt and one log line each, to
/// be written once the state is stored.
pub(super) fn record(
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
        if env.is_bounce {
            match result.outcome {
                Outcome::Sent => summary.reports.sent += 1,
                Outcome::Deferred => summary.reports.deferred += 1,
                Outcome::Bounced => summary.reports.bounced += 1,
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
    match (crate::smtp_syntax::enhanced_status(reply), outcome) {
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
