//! One module per face; each combines the lower modules for one job.

pub mod aliases;
pub mod config_check;
pub mod credentials;
pub mod demo;
pub mod doctor;
pub mod flush;
pub mod flush_command;
pub mod generate;
pub mod oauth2;
pub mod queue;
pub mod sendmail;
pub mod setup;
pub mod sink;
pub mod smtp_stdin;
pub mod submit;

/// The log event for a leftover of an interrupted submission that a face
/// removed (submit, flush and `queue clean` all clean up).
pub fn orphan_event(orphan: &crate::spool::Orphan) -> crate::log::Event {
    crate::log::Event::new(crate::log::event::ORPHAN_REMOVED)
        .field("file", orphan.path.display())
        .field("size", orphan.size)
}
