//! Exit statuses from `sysexits.h`, which sendmail callers (cron, mailx,
//! PHP, git) interpret: 75 means "try again later", everything else in the
//! 64..78 range is a permanent refusal with a reason.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sysexit {
    Ok = 0,
    Usage = 64,
    DataErr = 65,
    NoInput = 66,
    NoUser = 67,
    Unavailable = 69,
    Software = 70,
    OsErr = 71,
    CantCreate = 73,
    IoErr = 74,
    TempFail = 75,
    NoPerm = 77,
    Config = 78,
}

impl Sysexit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Implemented by every module's error type, so that only `main` turns an
/// error into a process exit status.
pub trait ExitStatus {
    fn sysexit(&self) -> Sysexit;
}

/// An error on its way to `main`: the text to print and the status to exit with.
#[derive(Debug)]
pub struct Failure {
    pub exit: Sysexit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Sysexit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + ExitStatus> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::new(err.sysexit(), err.to_string())
    }
}

/// Maps an I/O error met while storing a message to the status a caller
/// should act on: a full disk or quota is temporary (75), a permission
/// problem is 77, anything else is "cannot create" (73).
pub fn for_store_error(err: &std::io::Error) -> Sysexit {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            Sysexit::TempFail
        }
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => Sysexit::NoPerm,
        _ => match err.raw_os_error() {
            Some(code) if code == nix::libc::EIO => Sysexit::IoErr,
            _ => Sysexit::CantCreate,
        },
    }
}

/// What to do about an error met while storing a message, to follow the
/// error text (empty when there is nothing better to say).
pub fn store_advice(err: &std::io::Error) -> &'static str {
    match for_store_error(err) {
        Sysexit::TempFail => "; the spool filesystem is full: free space and the message can be sent again",
        Sysexit::NoPerm => "; check the spool's owner and mode (system mode: root:relaymail 2770 and a setgid relaymail binary)",
        _ => "",
    }
}
