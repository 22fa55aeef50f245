//! The messages between the agent and its clients.
//!
//! Each message is one datagram on a `SOCK_SEQPACKET` Unix socket, so message boundaries and
//! the file descriptors attached to a message (SCM_RIGHTS) arrive together. A message is ASCII
//! words separated by single spaces; strings (session names, paths, error texts) are written as
//! `LEN:BYTES`, so they may contain spaces and any byte but NUL.

use std::fmt;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Hold the attached file under `token` in the outgoing session `session` (created on first
    /// use) until the kexec.
    Preserve { session: String, token: u64 },
    /// Describe the sessions the agent holds whose names sort after `after` (all of them for
    /// an empty `after`), as many as fit in one message; a [`Response::Page`] says to ask again
    /// after its last name.
    List { after: String },
    /// Hand back the file `token` of session `session`. Of an outgoing session, a copy: the
    /// file stays preserved. Of an incoming one, the file taken from the kernel; the agent
    /// keeps a copy until the client confirms it has what it needs ([`Request::Confirm`]), so
    /// a client that dies before then can ask again and loses nothing.
    Retrieve { session: String, token: u64 },
    /// The client has the file `token` safe: the agent lets go of its copy, and finishes the
    /// (incoming) session once every file of it was confirmed. For an outgoing session there
    /// is nothing to let go of.
    Confirm { session: String, token: u64 },
    /// Let go of a session now: an outgoing one is closed (its files are no longer preserved),
    /// an incoming one is finished (files not handed back are discarded).
    Release { session: String },
    /// The session's own descriptor, for the client to preserve files into (outgoing) or
    /// retrieve and finish them (incoming) itself; the agent keeps a reference, so the session
    /// outlives the client until the kexec or a [`Request::Release`].
    Delegate { session: String },
    /// Load `kernel` and `initrd` with `cmdline` and live update into them.
    Kexec {
        kernel: String,
        initrd: String,
        cmdline: String,
    },
}

/// Why the agent refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message could not be parsed, or lacked (or had an extra) file descriptor.
    BadRequest,
    /// No session of that name is held (in the needed direction).
    UnknownSession,
    /// The session holds no file with that token.
    UnknownToken,
    /// The token is already used in the session.
    DuplicateToken,
    /// The file is already preserved (in this or another session), or the device is busy.
    Busy,
    /// No handler of the kernel can preserve this kind of file.
    Unsupported,
    /// The session name is not one the kernel accepts.
    InvalidName,
    /// The kernel refused the operation for another reason (see the errno).
    Kernel,
    /// The agent could not do it (loading the kernel, writing its records).
    Failed,
    /// The session belongs to another user, or the request is root's alone.
    NotPermitted,
    /// The file would take the user past its quota of files or bytes held.
    OverQuota,
}

impl Refusal {
    const ALL: [(Refusal, &'static str); 11] = [
        (Refusal::BadRequest, "bad-request"),
        (Refusal::UnknownSession, "unknown-session"),
        (Refusal::UnknownToken, "unknown-token"),
        (Refusal::DuplicateToken, "duplicate-token"),
        (Refusal::Busy, "busy"),
        (Refusal::Unsupported, "unsupported"),
        (Refusal::InvalidName, "invalid-name"),
        (Refusal::Kernel, "kernel"),
        (Refusal::Failed, "failed"),
        (Refusal::NotPermitted, "not-permitted"),
        (Refusal::OverQuota, "over-quota"),
    ];

    /// The refusal's name on the wire (`unknown-session`, ...), also what `luoctl --json`
    /// prints.
    pub fn word(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("failed", |(_, w)| w)
    }

    fn from_word(w: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, s)| *s == w).map(|(r, _)| *r)
    }
}

/// Which way a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Created in this boot, carried into the next kernel.
    Outgoing,
    /// Handed over by the previous kernel, waiting for its files to be taken back.
    Incoming,
}

/// One session in a [`Response::Sessions`] listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    pub direction: Direction,
    /// The tokens held (outgoing) or not yet confirmed by their client (incoming).
    pub tokens: Vec<u64>,
    /// Delegated to its client ([`Request::Delegate`]): it may hold files the agent does not
    /// know of.
    pub delegated: bool,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Done; a retrieved file is attached to the message.
    Ok,
    /// The sessions held (the last ones, if the listing took several messages).
    Sessions(Vec<SessionInfo>),
    /// Some of the sessions held, in name order; more follow after the last one.
    Page(Vec<SessionInfo>),
    /// The session asked for with [`Request::Delegate`] is attached; it goes this way.
    Delegated(Direction),
    /// Refused: why, the kernel's errno if it gave one, and a sentence for people.
    Refused {
        why: Refusal,
        errno: i32,
        message: String,
    },
}

/// A message that is not one of the above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(format!(" {}:", s.len()).as_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_word(out: &mut Vec<u8>, w: impl fmt::Display) {
    out.extend_from_slice(format!(" {w}").as_bytes());
}

/// Reads the words and strings of a message in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(msg: &'a [u8]) -> Self {
        Self { rest: msg }
    }

    fn err(&self, what: &str) -> ParseError {
        ParseError(what.to_owned())
    }

    fn skip_space(&mut self) -> Result<(), ParseError> {
        match self.rest.split_first() {
            Some((b' ', rest)) => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(self.err("expected a space")),
        }
    }

    fn word(&mut self) -> Result<&'a str, ParseError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(self.rest.len());
        let (w, rest) = self.rest.split_at(end);
        if w.is_empty() {
            return Err(self.err("expected a word"));
        }
        self.rest = rest;
        std::str::from_utf8(w).map_err(|_| self.err("a word is not UTF-8"))
    }

    fn next_word(&mut self) -> Result<&'a str, ParseError> {
        self.skip_space()?;
        self.word()
    }

    fn number<T: std::str::FromStr>(&mut self) -> Result<T, ParseError> {
        self.next_word()?
            .parse()
            .map_err(|_| self.err("expected a number"))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_space()?;
        let colon = self
            .rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| self.err("expected LEN:BYTES"))?;
        let len: usize = std::str::from_utf8(&self.rest[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err("bad string length"))?;
        // The length is the peer's: a huge one must not wrap around.
        let end = colon
            .checked_add(1)
            .and_then(|start| start.checked_add(len))
            .ok_or_else(|| self.err("bad string length"))?;
        let body = self
            .rest
            .get(colon + 1..end)
            .ok_or_else(|| self.err("string too short"))?;
        let s = String::from_utf8(body.to_vec()).map_err(|_| self.err("a string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(self.err("a string contains NUL"));
        }
        self.rest = self.rest.get(end..).unwrap_or_default();
        Ok(s)
    }

    fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    fn end(self) -> Result<(), ParseError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

impl Request {
    /// The message for this request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Preserve { session, token } => {
                out.extend_from_slice(b"PRESERVE");
                push_str(&mut out, session);
                push_word(&mut out, token);
            }
            Request::List { after } => {
                out.extend_from_slice(b"LIST");
                if !after.is_empty() {
                    push_str(&mut out, after);
                }
            }
            Request::Retrieve { session, token } => {
                out.extend_from_slice(b"RETRIEVE");
                push_str(&mut out, session);
                push_word(&mut out, token);
            }
            Request::Confirm { session, token } => {
                out.extend_from_slice(b"CONFIRM");
                push_str(&mut out, session);
                push_word(&mut out, token);
            }
            Request::Release { session } => {
                out.extend_from_slice(b"RELEASE");
                push_str(&mut out, session);
            }
            Request::Delegate { session } => {
                out.extend_from_slice(b"DELEGATE");
                push_str(&mut out, session);
            }
            Request::Kexec {
                kernel,
                initrd,
                cmdline,
            } => {
                out.extend_from_slice(b"KEXEC");
                push_str(&mut out, kernel);
                push_str(&mut out, initrd);
                push_str(&mut out, cmdline);
            }
        }
        out
    }

    /// Parses a request message.
    pub fn decode(msg: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(msg);
        let req = match r.word()? {
            "PRESERVE" => Request::Preserve {
                session: r.string()?,
                token: r.number()?,
            },
            "LIST" => Request::List {
                after: if r.at_end() {
                    String::new()
                } else {
                    r.string()?
                },
            },
            "RETRIEVE" => Request::Retrieve {
                session: r.string()?,
                token: r.number()?,
            },
            "CONFIRM" => Request::Confirm {
                session: r.string()?,
                token: r.number()?,
            },
            "RELEASE" => Request::Release {
                session: r.string()?,
            },
            "DELEGATE" => Request::Delegate {
                session: r.string()?,
            },
            "KEXEC" => Request::Kexec {
                kernel: r.string()?,
                initrd: r.string()?,
                cmdline: r.string()?,
            },
            other => return Err(ParseError(format!("unknown request {other:?}"))),
        };
        r.end()?;
        Ok(req)
    }

    /// The request's name, for the log.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Preserve { .. } => "PRESERVE",
            Request::List { .. } => "LIST",
            Request::Retrieve { .. } => "RETRIEVE",
            Request::Confirm { .. } => "CONFIRM",
            Request::Release { .. } => "RELEASE",
            Request::Delegate { .. } => "DELEGATE",
            Request::Kexec { .. } => "KEXEC",
        }
    }

    /// Whether the request comes with a file descriptor.
    pub fn carries_fd(&self) -> bool {
        matches!(self, Request::Preserve { .. })
    }
}

impl Response {
    /// A refusal: why, the kernel's errno (0 if none) and a sentence for people.
    pub fn refused(why: Refusal, errno: i32, message: impl Into<String>) -> Self {
        Response::Refused {
            why,
            errno,
            message: message.into(),
        }
    }

    /// The message for this response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Ok => out.extend_from_slice(b"OK"),
            Response::Delegated(direction) => {
                out.extend_from_slice(b"DELEGATED");
                push_word(
                    &mut out,
                    match direction {
                        Direction::Outgoing => "out",
                        Direction::Incoming => "in",
                    },
                );
            }
            Response::Sessions(list) | Response::Page(list) => {
                out.extend_from_slice(match self {
                    Response::Page(_) => b"PAGE".as_slice(),
                    _ => b"SESSIONS".as_slice(),
                });
                push_word(&mut out, list.len());
                for s in list {
                    push_str(&mut out, &s.name);
                    push_word(
                        &mut out,
                        match (s.direction, s.delegated) {
                            (Direction::Outgoing, false) => "out",
                            (Direction::Incoming, false) => "in",
                            (Direction::Outgoing, true) => "out-delegated",
                            (Direction::Incoming, true) => "in-delegated",
                        },
                    );
                    push_word(&mut out, s.tokens.len());
                    for t in &s.tokens {
                        push_word(&mut out, t);
                    }
                }
            }
            Response::Refused {
                why,
                errno,
                message,
            } => {
                out.extend_from_slice(b"REFUSED");
                push_word(&mut out, why.word());
                push_word(&mut out, errno);
                push_str(&mut out, message);
            }
        }
        out
    }

    /// Parses a response message.
    pub fn decode(msg: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(msg);
        let resp = match r.word()? {
            "OK" => Response::Ok,
            "DELEGATED" => Response::Delegated(match r.next_word()? {
                "out" => Direction::Outgoing,
                "in" => Direction::Incoming,
                _ => return Err(ParseError("bad direction".into())),
            }),
            word @ ("SESSIONS" | "PAGE") => {
                let n: usize = r.number()?;
                let mut list = Vec::new();
                for _ in 0..n {
                    let name = r.string()?;
                    let (direction, delegated) = match r.next_word()? {
                        "out" => (Direction::Outgoing, false),
                        "in" => (Direction::Incoming, false),
                        "out-delegated" => (Direction::Outgoing, true),
                        "in-delegated" => (Direction::Incoming, true),
                        _ => return Err(ParseError("bad direction".into())),
                    };
                    let count: usize = r.number()?;
                    let mut tokens = Vec::new();
                    for _ in 0..count {
                        tokens.push(r.number()?);
                    }
                    list.push(SessionInfo {
                        name,
                        direction,
                        tokens,
                        delegated,
                    });
                }
                if word == "PAGE" {
                    Response::Page(list)
                } else {
                    Response::Sessions(list)
                }
            }
            "REFUSED" => {
                let word = r.next_word()?;
                let why = Refusal::from_word(word)
                    .ok_or_else(|| ParseError(format!("unknown refusal {word:?}")))?;
                Response::Refused {
                    why,
                    errno: r.number()?,
                    message: r.string()?,
                }
            }
            other => return Err(ParseError(format!("unknown response {other:?}"))),
        };
        r.end()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let all = [
            Request::Preserve {
                session: "vm 1: guest RAM".into(),
                token: u64::MAX,
            },
            Request::List {
                after: String::new(),
            },
            Request::List {
                after: "x y".into(),
            },
            Request::Retrieve {
                session: "a".into(),
                token: 0,
            },
            Request::Release {
                session: "x:y".into(),
            },
            Request::Confirm {
                session: "c".into(),
                token: 3,
            },
            Request::Delegate {
                session: "vm ram".into(),
            },
            Request::Kexec {
                kernel: "/boot/vmlinuz".into(),
                initrd: String::new(),
                cmdline: "a b=c".into(),
            },
        ];
        for r in all {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn responses_round_trip() {
        let all = [
            Response::Ok,
            Response::Delegated(Direction::Outgoing),
            Response::Delegated(Direction::Incoming),
            Response::Sessions(vec![]),
            Response::Sessions(vec![
                SessionInfo {
                    name: "one two".into(),
                    direction: Direction::Outgoing,
                    tokens: vec![1, 2],
                    delegated: false,
                },
                SessionInfo {
                    name: "3".into(),
                    direction: Direction::Incoming,
                    tokens: vec![],
                    delegated: true,
                },
            ]),
            Response::Refused {
                why: Refusal::DuplicateToken,
                errno: libc::EEXIST,
                message: "token 7 taken".into(),
            },
        ];
        for r in all {
            assert_eq!(Response::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"PRESERVE",
            b"PRESERVE 3:abc",
            b"PRESERVE 3:abc x",
            b"PRESERVE 9:abc 1",
            b"PRESERVE 3:abc 1 ",
            b"PRESERVE 3:abc 1 extra",
            b"LIST ",
            b"FROB",
            b"RELEASE 2:a\0",
            b"RELEASE 1:\xff",
            b"RELEASE 18446744073709551615:a",
            b"PRESERVE 18446744073709551614:ab 1",
        ] {
            assert!(
                Request::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"SESSIONS 2 1:a out 0"[..],
            b"REFUSED nope 0 0:",
            b"SESSIONS 1 1:a sideways 0",
        ] {
            assert!(
                Response::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
