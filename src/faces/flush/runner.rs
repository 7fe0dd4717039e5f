//! Background runners: the `-odb` child that delivers its message and
//! then, holding one of `[smarthost] connections` runner slots, keeps its
//! sessions open for mail queued meanwhile (docs/spool.md, "Background
//! runners"), and the submitter's question whether a runner is at work.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{flush, flush_tracked, lock, now, Options, Run, Summary};
use crate::config::Config;
use crate::log::Logger;
use crate::spool::{Envelope, QueueId, Slot, Spool};
use crate::sysexits::Failure;

/// How long a runner keeps offering again a message it found locked.
const BUSY_RETRY: Duration = Duration::from_secs(3);

/// The `-odb` child: deliver `ids`, then whatever is due, as one of at
/// most `[smarthost] connections` background runners. When every runner
/// slot is held, a runner is at work and takes the message (it looks at
/// the queue again after it gives its slot up, so mail queued while it
/// was finishing is not left for the timer); when no slot can be used at
/// all, the child delivers by itself.
pub fn background(
    config: &Config,
    ids: Vec<QueueId>,
    log: &mut Logger,
) -> Result<Summary, Failure> {
    let Some(host) = &config.smarthost else {
        return Ok(Summary::default());
    };
    let spool = Spool::open(&config.spool_dir, config.mode)?;
    let mut total = Summary::default();
    // Every message a round took or looked at: not read again.
    let mut seen: HashSet<QueueId> = HashSet::new();
    let mut ids = ids;
    loop {
        let slot = match spool.runner_slot(host.connections) {
            Slot::Busy => return Ok(total),
            Slot::Unavailable => {
                let mine = Options {
                    ids,
                    ..Options::default()
                };
                total.add(&flush(config, &mine, log)?);
                let due = Options {
                    due_only: true,
                    ..Options::default()
                };
                total.add(&flush(config, &due, log)?);
                return Ok(total);
            }
            Slot::Held(slot) => slot,
        };
        // Its own messages and everything due when it starts, -odq mail
        // too (a host without a timer still moves); what is queued while
        // it lingers comes from `refill`, which leaves -odq mail alone.
        let mut start = std::mem::take(&mut ids);
        let due_now = scan(&spool, true, |id| !seen.contains(id) && !start.contains(id));
        start.extend(due_now.take);
        seen.extend(due_now.pass);
        if start.is_empty() {
            // Taken by someone else meanwhile; an empty list would mean
            // "everything" to the flush.
            return Ok(total);
        }
        let options = Options {
            due_only: true,
            ids: start,
            linger: Some(host.session_linger),
        };
        let (summary, looked_at) = flush_tracked(config, &options, log)?;
        total.add(&summary);
        seen.extend(looked_at);
        drop(slot);
        // Queued after the runner's last look, while the slot still
        // seemed taken: that submitter left its message to us.
        let waiting = scan(&spool, false, |id| !seen.contains(id));
        if waiting.take.is_empty() {
            return Ok(total);
        }
    }
}

/// Every runner slot is held: a runner at work takes a message committed
/// now (it looks at the queue again after it gives its slot up, and this
/// is asked after the commit), so an `-odb` submitter need not start a
/// background child for it. In a burst that saves a process per message.
pub fn runner_at_work(config: &Config) -> bool {
    let Some(host) = &config.smarthost else {
        return false;
    };
    Spool::open(&config.spool_dir, config.mode)
        .is_ok_and(|spool| matches!(spool.runner_slot(host.connections), Slot::Busy))
}

/// A background runner's look at the queue. Only the envelopes of ids
/// `unseen` accepts are read: a lingering runner looks again at every
/// change of the queue directory, and a large backlog it has already
/// judged must not be read again each time.
struct Scan {
    /// What the runner may take now (see `takeable`), oldest first.
    take: Vec<QueueId>,
    /// Read and left alone (or unreadable). The same runner does not look
    /// at them again: a hold released or a retry coming due meanwhile
    /// waits for the next run.
    pass: Vec<QueueId>,
}

fn scan(spool: &Spool, queue_only_too: bool, unseen: impl Fn(&QueueId) -> bool) -> Scan {
    let mut scan = Scan {
        take: Vec::new(),
        pass: Vec::new(),
    };
    let Ok(ids) = spool.ids() else {
        return scan;
    };
    for id in ids.into_iter().filter(|id| unseen(id)) {
        match spool.read(&id) {
            Ok(env) if takeable(&env, queue_only_too) => scan.take.push(id),
            _ => scan.pass.push(id),
        }
    }
    scan
}

/// Due, not held and, while still untried, not queued with -odi (its
/// submitter delivers it) nor (unless `queue_only_too`) with -odq (it
/// waits for the queue run).
fn takeable(env: &Envelope, queue_only_too: bool) -> bool {
    let due = !env.held && env.next_attempt.is_none_or(|t| t <= now());
    let left_to_others = env.interactive || (env.queue_only && !queue_only_too);
    due && (env.attempts > 0 || !left_to_others)
}

impl Run<'_> {
    /// A runner whose queue ran dry: takes the due messages queued since
    /// (true), waiting up to the linger time for one to appear; false when
    /// there is none (or this is no runner).
    pub(super) fn refill(&self) -> bool {
        let Some(linger) = self.options.linger else {
            return false;
        };
        let _turn = lock(&self.refilling);
        if self.idle_over.load(Ordering::SeqCst) {
            return false;
        }
        if !lock(&self.queue).is_empty() {
            return true;
        }
        // What was delivered is durable before the wait.
        if self.sync_removals().is_err() {
            return false;
        }
        let deadline = Instant::now() + linger;
        let mut busy_pause = Duration::from_millis(10);
        let mut busy_waited = Duration::ZERO;
        loop {
            let token = self.spool.queue_changed_token();
            let fresh = {
                let tried = lock(&self.tried);
                let passed = lock(&self.passed);
                scan(&self.spool, false, |id| {
                    !tried.contains(id) && !passed.contains(id)
                })
            };
            lock(&self.passed).extend(fresh.pass);
            let fresh = fresh.take;
            if !fresh.is_empty() {
                lock(&self.tried).extend(fresh.iter().cloned());
                lock(&self.queue).extend(fresh);
                return true;
            }
            // Found locked: most often a submitter that has just committed
            // and not yet let go; offered again after a short pause, for a
            // bounded time (a longer holder is delivering it itself).
            let busy: Vec<QueueId> = lock(&self.busy).clone();
            if !busy.is_empty() && busy_waited < BUSY_RETRY {
                std::thread::sleep(busy_pause);
                busy_waited += busy_pause;
                busy_pause = (busy_pause * 2).min(Duration::from_millis(250));
                let mut tried = lock(&self.tried);
                for id in &busy {
                    tried.remove(id);
                }
                lock(&self.busy).clear();
                continue;
            }
            // Poll the directory's change time until something is linked
            // or the linger time is over.
            loop {
                if Instant::now() >= deadline {
                    self.idle_over.store(true, Ordering::SeqCst);
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
                if self.spool.queue_changed_token() != token {
                    break;
                }
            }
        }
    }
}
