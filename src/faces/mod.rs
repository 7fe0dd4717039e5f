//! One module per face; each combines the lower modules for one job.

pub mod aliases;
pub mod config_check;
pub mod demo;
pub mod flush;
pub mod queue;
pub mod sink;
pub mod submit;
