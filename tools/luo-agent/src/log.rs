//! The agent's log: one line per event on standard output, with its syslog priority.
//!
//! Under systemd standard output goes to the journal, which reads a `<N>` prefix as the line's
//! priority, so refusals show as warnings and failures as errors in `journalctl -p`. Elsewhere
//! (a console, a test's pipe) the prefix would only be noise and is left out. systemd says
//! which stream is the journal's in `JOURNAL_STREAM` (device and inode).

use std::fmt;
use std::os::fd::AsFd;

/// A syslog priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The agent cannot do its job (it stops, or loses track of something it holds).
    Err = 3,
    /// A client's request was refused, or something was skipped.
    Warning = 4,
    /// A live update and other machine-wide events.
    Notice = 5,
    /// What the agent holds and hands back.
    Info = 6,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", *self as u8)
    }
}

/// Whether standard output is the stream `JOURNAL_STREAM` names.
pub fn stdout_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(out) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(out).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// One line of the log as written: `luo-agent: ` and the message, after the priority when the
/// journal reads it.
pub fn line(journal: bool, priority: Priority, message: &str) -> String {
    if journal {
        format!("{priority}luo-agent: {message}")
    } else {
        format!("luo-agent: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_prefixed_for_the_journal_only() {
        assert_eq!(line(true, Priority::Warning, "x"), "<4>luo-agent: x");
        assert_eq!(line(true, Priority::Info, "y"), "<6>luo-agent: y");
        assert_eq!(line(false, Priority::Err, "z"), "luo-agent: z");
    }
}
