//! The agent against a model of `/dev/liveupdate` that follows 7.3's rules: sessions die with
//! their descriptors, a token is unique in a session, a file can be in one session only, only
//! memfds can be preserved, and a kexec turns the open sessions into incoming ones.

use liveupdate::{Error, Op};
use luo_agent::agent::{
    format_manifest, format_record, parse_manifest, parse_record, Agent, Device, Limits, Recorded,
    SessionOps, MANIFEST_SESSION, MANIFEST_SESSIONS,
};
use luo_agent::client::{Client, ClientError};
use luo_agent::kexec::{Image, Kexec};
use luo_agent::proto::{Direction, Refusal, Request, Response};
use luo_agent::server::{Manifest, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

type Files = BTreeMap<u64, OwnedFd>;

#[derive(Default)]
struct State {
    generation: u64,
    live: BTreeMap<String, Files>,
    incoming: BTreeMap<String, Files>,
    retrieved: BTreeSet<String>,
    finished: Vec<String>,
}

#[derive(Clone, Default)]
struct Machine(Arc<Mutex<State>>);

struct ModelSession {
    machine: Machine,
    name: String,
    generation: u64,
    incoming: bool,
}

fn kernel(op: Op, errno: i32) -> Error {
    Error::Kernel { op, errno }
}

fn inode(fd: BorrowedFd<'_>) -> (u64, u64) {
    let f = std::fs::File::from(fd.try_clone_to_owned().unwrap());
    let m = f.metadata().unwrap();
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

fn is_memfd(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().starts_with("/memfd:"))
        .unwrap_or(false)
}

impl Machine {
    /// Whether session `name` was finished.
    fn finished(&self, name: &str) -> bool {
        self.0.lock().unwrap().finished.iter().any(|f| f == name)
    }

    /// The kexec: every open session is carried over; the old agent must be dropped next.
    fn kexec(&self) {
        let mut s = self.0.lock().unwrap();
        s.generation += 1;
        s.incoming = std::mem::take(&mut s.live);
        s.retrieved.clear();
    }
}

impl Device for Machine {
    type Session = ModelSession;
    fn create_session(&self, name: &str) -> liveupdate::Result<ModelSession> {
        if name.is_empty() || name.len() > 63 {
            return Err(Error::InvalidName(name.into()));
        }
        let mut s = self.0.lock().unwrap();
        if s.live.contains_key(name) || s.incoming.contains_key(name) {
            return Err(kernel(Op::CreateSession, libc::EEXIST));
        }
        s.live.insert(name.into(), Files::new());
        Ok(ModelSession {
            machine: self.clone(),
            name: name.into(),
            generation: s.generation,
            incoming: false,
        })
    }
    fn retrieve_session(&self, name: &str) -> liveupdate::Result<ModelSession> {
        let mut s = self.0.lock().unwrap();
        if !s.incoming.contains_key(name) {
            return Err(kernel(Op::RetrieveSession, libc::ENOENT));
        }
        if !s.retrieved.insert(name.into()) {
            return Err(kernel(Op::RetrieveSession, libc::EINVAL));
        }
        Ok(ModelSession {
            machine: self.clone(),
            name: name.into(),
            generation: s.generation,
            incoming: true,
        })
    }
}

impl SessionOps for ModelSession {
    fn preserve_fd(&self, file: BorrowedFd<'_>, token: u64) -> liveupdate::Result<()> {
        let mut s = self.machine.0.lock().unwrap();
        if self.incoming {
            return Err(kernel(Op::PreserveFd, libc::EINVAL));
        }
        if !is_memfd(file) {
            return Err(kernel(Op::PreserveFd, libc::ENOENT));
        }
        let id = inode(file);
        if s.live
            .values()
            .flat_map(|f| f.values())
            .any(|f| inode(f.as_fd()) == id)
        {
            return Err(kernel(Op::PreserveFd, libc::EBUSY));
        }
        let files = s.live.get_mut(&self.name).unwrap();
        if files.contains_key(&token) {
            return Err(kernel(Op::PreserveFd, libc::EEXIST));
        }
        files.insert(token, file.try_clone_to_owned().unwrap());
        Ok(())
    }
    fn retrieve_fd(&self, token: u64) -> liveupdate::Result<OwnedFd> {
        let s = self.machine.0.lock().unwrap();
        let files = s
            .incoming
            .get(&self.name)
            .filter(|_| self.incoming)
            .ok_or(kernel(Op::RetrieveFd, libc::EINVAL))?;
        files
            .get(&token)
            .map(|f| f.try_clone().unwrap())
            .ok_or(kernel(Op::RetrieveFd, libc::ENOENT))
    }
    fn finish(&self) -> liveupdate::Result<()> {
        let mut s = self.machine.0.lock().unwrap();
        if !self.incoming || s.incoming.remove(&self.name).is_none() {
            return Err(kernel(Op::Finish, libc::EINVAL));
        }
        s.finished.push(self.name.clone());
        Ok(())
    }
    fn share(&self) -> std::io::Result<OwnedFd> {
        // The model has no session files: the client gets a stand-in, and the test acts on
        // the model as the client would through it.
        Ok(std::fs::File::open("/dev/null")?.into())
    }
}

impl Drop for ModelSession {
    fn drop(&mut self) {
        // Closing an outgoing session unpreserves its files, unless the kexec took it.
        let mut s = self.machine.0.lock().unwrap();
        if !self.incoming && s.generation == self.generation {
            s.live.remove(&self.name);
        }
    }
}

fn memfd(data: &[u8]) -> OwnedFd {
    let fd = luo_agent::sys::memfd(c"agent-test").unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(data).unwrap();
    f.into()
}

fn contents(fd: OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd);
    f.rewind().unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

fn preserve(agent: &mut Agent<Machine>, session: &str, token: u64, fd: OwnedFd) -> Response {
    agent
        .handle(
            &Request::Preserve {
                session: session.into(),
                token,
            },
            vec![fd],
        )
        .0
}

fn refused(r: &Response) -> Option<Refusal> {
    match r {
        Response::Refused { why, .. } => Some(*why),
        _ => None,
    }
}

fn retrieve(agent: &mut Agent<Machine>, session: &str, token: u64) -> Vec<u8> {
    let req = Request::Retrieve {
        session: session.into(),
        token,
    };
    match agent.handle(&req, vec![]) {
        (Response::Ok, Some(fd)) => contents(fd),
        other => panic!("{other:?}"),
    }
}

fn confirm(agent: &mut Agent<Machine>, session: &str, token: u64) -> Response {
    let req = Request::Confirm {
        session: session.into(),
        token,
    };
    agent.handle(&req, vec![]).0
}

/// A machine that never live updated, and an agent on it.
fn started() -> (Machine, Agent<Machine>) {
    let machine = Machine::default();
    let (agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["no sessions from a previous kernel"]);
    (machine, agent)
}

/// Runs the kexec as the server does: manifest preserved, machine kexecs, old agent gone.
fn live_update(machine: &Machine, mut agent: Agent<Machine>) -> (Agent<Machine>, Vec<String>) {
    agent.write_record().unwrap();
    machine.kexec();
    drop(agent);
    Agent::start(machine.clone())
}

#[test]
fn files_of_several_sessions_come_back_after_a_live_update() {
    let machine = Machine::default();
    let (mut agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["no sessions from a previous kernel"]);
    assert_eq!(
        preserve(&mut agent, "vm 1", 1, memfd(b"guest ram 1")),
        Response::Ok
    );
    assert_eq!(
        preserve(&mut agent, "vm 1", 2, memfd(b"guest ram 2")),
        Response::Ok
    );
    assert_eq!(
        preserve(&mut agent, "cache", 7, memfd(b"kv data")),
        Response::Ok
    );
    let (mut agent, log) = live_update(&machine, agent);
    assert_eq!(log.len(), 2, "{log:?}");
    let listed = agent.list();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s.direction == Direction::Incoming));
    // Each file back, then confirmed as safe with its client.
    let get = |agent: &mut Agent<Machine>, s: &str, t| {
        let data = retrieve(agent, s, t);
        assert_eq!(confirm(agent, s, t), Response::Ok);
        data
    };
    assert_eq!(get(&mut agent, "cache", 7), b"kv data");
    assert_eq!(get(&mut agent, "vm 1", 2), b"guest ram 2");
    // A session is finished once all its files are back and confirmed.
    assert_eq!(
        machine.0.lock().unwrap().finished,
        ["luo-agent.manifest", "cache"]
    );
    assert_eq!(get(&mut agent, "vm 1", 1), b"guest ram 1");
    assert!(agent.list().is_empty());
    assert!(machine.0.lock().unwrap().incoming.is_empty());
}

#[test]
fn refusals_say_why_and_lose_nothing() {
    let (machine, mut agent) = started();
    let file = memfd(b"x");
    assert_eq!(
        preserve(&mut agent, "s", 1, file.try_clone().unwrap()),
        Response::Ok
    );
    assert_eq!(
        refused(&preserve(&mut agent, "s", 1, memfd(b"y"))),
        Some(Refusal::DuplicateToken)
    );
    assert_eq!(
        refused(&preserve(&mut agent, "t", 2, file)),
        Some(Refusal::Busy)
    );
    let pipe = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        refused(&preserve(&mut agent, "u", 3, pipe.into())),
        Some(Refusal::Unsupported)
    );
    assert_eq!(
        refused(&preserve(&mut agent, &"n".repeat(64), 1, memfd(b""))),
        Some(Refusal::InvalidName)
    );
    assert_eq!(
        refused(&preserve(&mut agent, MANIFEST_SESSION, 1, memfd(b""))),
        Some(Refusal::InvalidName)
    );
    let (r, _) = agent.handle(
        &Request::Preserve {
            session: "s".into(),
            token: 9,
        },
        vec![],
    );
    assert_eq!(refused(&r), Some(Refusal::BadRequest));
    let (r, _) = agent.handle(
        &Request::List {
            after: String::new(),
        },
        vec![memfd(b"")],
    );
    assert_eq!(refused(&r), Some(Refusal::BadRequest));
    // Before the update a client may take a copy of what it preserved; it stays preserved.
    assert_eq!(retrieve(&mut agent, "s", 1), b"x");
    assert_eq!(confirm(&mut agent, "s", 1), Response::Ok);
    let (r, _) = agent.handle(
        &Request::Retrieve {
            session: "s".into(),
            token: 2,
        },
        vec![],
    );
    assert_eq!(refused(&r), Some(Refusal::UnknownToken));
    let (r, _) = agent.handle(
        &Request::Retrieve {
            session: "absent".into(),
            token: 1,
        },
        vec![],
    );
    assert_eq!(refused(&r), Some(Refusal::UnknownSession));
    assert_eq!(
        refused(
            &agent
                .handle(
                    &Request::Release {
                        session: "nope".into()
                    },
                    vec![]
                )
                .0
        ),
        Some(Refusal::UnknownSession)
    );
    // Failed requests left no empty sessions behind, and "s" still holds its file.
    let listed = agent.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tokens, [1]);
    let (mut agent, _) = live_update(&machine, agent);
    let (r, _) = agent.handle(
        &Request::Retrieve {
            session: "s".into(),
            token: 5,
        },
        vec![],
    );
    assert_eq!(refused(&r), Some(Refusal::UnknownToken));
    // Files cannot go into a session that came from the previous kernel.
    assert_eq!(
        refused(&preserve(&mut agent, "s", 2, memfd(b""))),
        Some(Refusal::Busy)
    );
    // Releasing it finishes it: the file not taken back is discarded.
    assert_eq!(
        agent
            .handle(
                &Request::Release {
                    session: "s".into()
                },
                vec![]
            )
            .0,
        Response::Ok
    );
    assert!(machine.0.lock().unwrap().finished.contains(&"s".to_owned()));
}

#[test]
fn released_outgoing_sessions_are_not_carried() {
    let (machine, mut agent) = started();
    assert_eq!(preserve(&mut agent, "keep", 1, memfd(b"k")), Response::Ok);
    assert_eq!(preserve(&mut agent, "drop", 1, memfd(b"d")), Response::Ok);
    assert_eq!(
        agent
            .handle(
                &Request::Release {
                    session: "drop".into()
                },
                vec![]
            )
            .0,
        Response::Ok
    );
    let (agent, _) = live_update(&machine, agent);
    let names: Vec<_> = agent.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["keep"]);
}

#[test]
fn a_damaged_manifest_line_costs_its_own_session_only() {
    let (machine, mut agent) = started();
    assert_eq!(preserve(&mut agent, "good", 1, memfd(b"g")), Response::Ok);
    // The manifest as an agent would write it, with a damaged line between two good ones.
    let s = machine.create_session(MANIFEST_SESSION).unwrap();
    s.preserve_fd(
        memfd(b"uid=0 1 good\nuid=0 1,x damaged\n1 gone\n").as_fd(),
        1,
    )
    .unwrap();
    machine.kexec();
    drop(s);
    drop(agent);
    let (agent, log) = Agent::start(machine.clone());
    let names: Vec<_> = agent.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["good"]);
    assert_eq!(log[0], "line 2 of the manifest is malformed; skipped");
    assert_eq!(log[1], "adopted session \"good\" with 1 file(s)");
    assert!(
        log[2].starts_with("cannot retrieve session \"gone\""),
        "{log:?}"
    );
}

#[test]
fn manifests_round_trip() {
    let entries = vec![
        Recorded {
            name: "a b".to_owned(),
            owner: 0,
            tokens: vec![1, u64::MAX],
            delegated: false,
        },
        Recorded {
            name: "empty".to_owned(),
            owner: 1000,
            tokens: vec![],
            delegated: false,
        },
    ];
    assert_eq!(parse_manifest(&format_manifest(&entries)), Some(entries));
    assert_eq!(parse_manifest("nospace"), None);
    assert_eq!(parse_manifest("uid=x 1 a"), None);
    // An agent that recorded no owners wrote "TOKENS NAME": root's sessions.
    assert_eq!(
        parse_manifest("1,2 old session\n"),
        Some(vec![Recorded {
            name: "old session".to_owned(),
            owner: 0,
            tokens: vec![1, 2],
            delegated: false,
        }])
    );
}

/// A server of `agent` as luo-agent makes one, kexecing with `kexec`.
fn server(agent: Agent<Machine>, kexec: Box<dyn Kexec>) -> Server<Machine> {
    Server {
        agent: Mutex::new(agent),
        kexec,
        log: Box::new(|_, _: &str| {}),
        manifest: Manifest::Session,
        changed: None,
        unclaimed_grace: None,
    }
}

/// A model of the machine's kexec: what was loaded, and whether loading or rebooting fails.
#[derive(Default)]
struct ModelKexec {
    load_fails: bool,
    loaded: Mutex<Option<String>>,
    unloads: std::sync::atomic::AtomicUsize,
}

/// The machine's kexec as the server sees it; the test keeps the other reference.
struct Kx(Arc<ModelKexec>);

impl Kexec for Kx {
    fn load(&self, image: &Image) -> std::io::Result<()> {
        if self.0.load_fails {
            return Err(std::io::Error::from_raw_os_error(libc::ENOEXEC));
        }
        *self.0.loaded.lock().unwrap() = Some(image.cmdline.clone());
        Ok(())
    }
    fn unload(&self) -> std::io::Result<()> {
        self.0
            .unloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.0.loaded.lock().unwrap() = None;
        Ok(())
    }
    fn reboot(&self) -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EPERM)
    }
}

fn failing_kexec() -> Box<dyn Kexec> {
    Box::new(Kx(Arc::new(ModelKexec {
        load_fails: true,
        ..Default::default()
    })))
}

/// A regular file to name as the kernel.
fn some_kernel() -> String {
    std::env::current_exe()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) },
        0
    );
    // SAFETY: Both are new descriptors that we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn clients_over_the_socket_and_a_client_that_disconnects() {
    let (machine, agent) = started();
    let server = Arc::new(server(agent, failing_kexec()));
    let connect = || {
        let (a, b) = socketpair();
        let s = Arc::clone(&server);
        std::thread::spawn(move || s.client(b));
        Client::from_fd(a)
    };
    let first = connect();
    first.preserve("svc", 1, memfd(b"state").as_fd()).unwrap();
    drop(first);
    let second = connect();
    let list = second.list().unwrap();
    assert_eq!(
        list.len(),
        1,
        "a disconnected client's file stays with the agent"
    );
    match second.preserve("svc", 1, memfd(b"other").as_fd()) {
        Err(ClientError::Refused {
            why: Refusal::DuplicateToken,
            errno,
            message,
        }) => {
            assert_eq!(errno, libc::EEXIST);
            assert!(message.contains("token 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A failed kexec says why; the sessions stay, and so does the record naming them.
    match second.kexec(&some_kernel(), "", "liveupdate=on") {
        Err(ClientError::Refused {
            why: Refusal::Failed,
            message,
            ..
        }) => assert!(message.starts_with("loading "), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(second.list().unwrap().len(), 1);
    assert!(machine
        .0
        .lock()
        .unwrap()
        .live
        .contains_key(MANIFEST_SESSION));
}

#[test]
fn threads_sharing_a_client_each_get_their_own_answers() {
    let (_machine, agent) = started();
    let server = Arc::new(server(agent, failing_kexec()));
    let (a, b) = socketpair();
    std::thread::spawn(move || server.client(b));
    let client = Arc::new(Client::from_fd(a));
    // One thread only lists, the other only asks for what is not there: an answer read by the
    // wrong thread shows as a refusal where a list was due, or the other way round.
    let lister = {
        let c = Arc::clone(&client);
        std::thread::spawn(move || {
            for _ in 0..5000 {
                assert!(c.list().unwrap().is_empty());
            }
        })
    };
    for _ in 0..5000 {
        match client.retrieve("absent", 1) {
            Err(ClientError::Refused {
                why: Refusal::UnknownSession,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    lister.join().unwrap();
}

#[test]
fn users_see_and_act_on_their_own_sessions_only() {
    const ALICE: u32 = 1000;
    const MALLORY: u32 = 1001;
    let (machine, mut agent) = started();
    let preserve_as = |agent: &mut Agent<Machine>, uid, s: &str, t| {
        agent
            .handle_as(
                uid,
                &Request::Preserve {
                    session: s.into(),
                    token: t,
                },
                vec![memfd(b"alice's secret")],
            )
            .0
    };
    let list_as = |agent: &mut Agent<Machine>, uid| match agent.handle_as(
        uid,
        &Request::List {
            after: String::new(),
        },
        vec![],
    ) {
        (Response::Sessions(l), None) => l.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let not_permitted = |r: &Response| {
        matches!(r, Response::Refused { why: Refusal::NotPermitted, errno, .. }
                 if *errno == libc::EPERM)
    };
    assert_eq!(preserve_as(&mut agent, ALICE, "alice", 1), Response::Ok);
    // Another user cannot add to the session, squat its name, see it or release it.
    assert!(not_permitted(&preserve_as(&mut agent, MALLORY, "alice", 2)));
    assert!(list_as(&mut agent, MALLORY).is_empty());
    assert_eq!(list_as(&mut agent, ALICE), ["alice"]);
    assert_eq!(list_as(&mut agent, 0), ["alice"], "root sees every session");
    let release = Request::Release {
        session: "alice".into(),
    };
    assert!(not_permitted(&agent.handle_as(MALLORY, &release, vec![]).0));
    assert_eq!(preserve_as(&mut agent, MALLORY, "mallory", 1), Response::Ok);

    // The owner crosses the update with the session.
    let (mut agent, _) = live_update(&machine, agent);
    let retrieve = Request::Retrieve {
        session: "alice".into(),
        token: 1,
    };
    assert!(not_permitted(
        &agent.handle_as(MALLORY, &retrieve, vec![]).0
    ));
    assert_eq!(list_as(&mut agent, MALLORY), ["mallory"]);
    match agent.handle_as(ALICE, &retrieve, vec![]) {
        (Response::Ok, Some(fd)) => assert_eq!(contents(fd), b"alice's secret"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_root_may_live_update_the_machine() {
    let (_machine, agent) = started();
    let model = Arc::new(ModelKexec::default());
    let server = server(agent, Box::new(Kx(Arc::clone(&model))));
    // The server learns the uid from the socket (SO_PEERCRED) and gates KEXEC on it.
    let kexec = Request::Kexec {
        kernel: some_kernel(),
        initrd: String::new(),
        cmdline: "liveupdate=on".into(),
    };
    let (resp, _) = server.handle(1000, &kexec, vec![]);
    assert!(
        matches!(
            resp,
            Response::Refused {
                why: Refusal::NotPermitted,
                ..
            }
        ),
        "{resp:?}"
    );
    assert!(
        model.loaded.lock().unwrap().is_none(),
        "a user loaded a kernel"
    );
}

#[test]
fn a_file_handed_out_stays_with_the_agent_until_confirmed() {
    let (machine, mut agent) = started();
    assert_eq!(
        preserve(&mut agent, "svc", 1, memfd(b"state")),
        Response::Ok
    );
    let (mut agent, _) = live_update(&machine, agent);
    // The client died before it had the data safe: it asks again and gets the same file.
    assert_eq!(retrieve(&mut agent, "svc", 1), b"state");
    assert_eq!(retrieve(&mut agent, "svc", 1), b"state");
    assert_eq!(agent.list()[0].tokens, [1], "unconfirmed, still listed");
    assert!(machine.0.lock().unwrap().finished == ["luo-agent.manifest"]);
    assert_eq!(
        refused(&confirm(&mut agent, "svc", 2)),
        Some(Refusal::UnknownToken)
    );
    assert_eq!(confirm(&mut agent, "svc", 1), Response::Ok);
    assert!(
        agent.list().is_empty(),
        "confirmed: the session is finished"
    );
    assert_eq!(
        machine.0.lock().unwrap().finished,
        ["luo-agent.manifest", "svc"]
    );
    assert_eq!(
        refused(&confirm(&mut agent, "svc", 1)),
        Some(Refusal::UnknownSession)
    );
}

#[test]
fn ten_thousand_sessions_are_listed_over_several_messages() {
    let (machine, mut agent) = started();
    // Names of 63 bytes: 10,000 of them are about ten times what one message holds.
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("{i:05}{}", "n".repeat(58)))
        .collect();
    for name in &names {
        let session = ModelSession {
            machine: machine.clone(),
            name: name.clone(),
            generation: 0,
            incoming: true,
        };
        agent.adopt(
            name.clone(),
            session,
            0,
            Direction::Incoming,
            vec![1, u64::MAX],
            false,
        );
    }
    let (a, b) = socketpair();
    let server = Arc::new(server(agent, failing_kexec()));
    std::thread::spawn(move || server.client(b));
    let listed = Client::from_fd(a).list().unwrap();
    assert_eq!(listed.len(), names.len());
    assert!(listed
        .iter()
        .zip(&names)
        .all(|(s, n)| &s.name == n && s.tokens == [1, u64::MAX]));
}

fn kexec_request(kernel: &str, initrd: &str, cmdline: &str) -> Request {
    Request::Kexec {
        kernel: kernel.into(),
        initrd: initrd.into(),
        cmdline: cmdline.into(),
    }
}

fn refusal_of(resp: &Response) -> (Refusal, String) {
    match resp {
        Response::Refused { why, message, .. } => (*why, message.clone()),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn a_live_update_is_checked_before_anything_is_loaded() {
    let (_machine, mut agent) = started();
    assert_eq!(
        preserve(&mut agent, "svc", 1, memfd(b"state")),
        Response::Ok
    );
    let model = Arc::new(ModelKexec::default());
    let server = server(agent, Box::new(Kx(Arc::clone(&model))));
    let kernel = some_kernel();
    for (req, says) in [
        (
            kexec_request(&kernel, "", "quiet"),
            "does not turn live update on",
        ),
        (
            kexec_request(&kernel, "", "liveupdate=on kho=off"),
            "turns KHO off",
        ),
        (
            kexec_request("/dev/null", "", "liveupdate=on"),
            "not a regular file",
        ),
        (
            kexec_request(&kernel, "/", "liveupdate=on"),
            "not a regular file",
        ),
        (
            kexec_request("/no/kernel", "", "liveupdate=on"),
            "/no/kernel",
        ),
    ] {
        let (why, message) = refusal_of(&server.handle(0, &req, vec![]).0);
        assert_eq!(why, Refusal::BadRequest, "{message}");
        assert!(message.contains(says), "{message}");
    }
    assert!(model.loaded.lock().unwrap().is_none());
    // A good request is loaded without an initramfs; the reboot fails here, so the kernel is
    // unloaded again and every session stays.
    let (why, message) = refusal_of(
        &server
            .handle(0, &kexec_request(&kernel, "", "liveupdate=on"), vec![])
            .0,
    );
    assert_eq!(why, Refusal::Failed);
    assert!(message.starts_with("reboot"), "{message}");
    assert_eq!(model.unloads.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(model.loaded.lock().unwrap().is_none());
    assert_eq!(server.agent.lock().unwrap().list().len(), 1);
}

/// A server that keeps its record current, as luo-agent does without systemd.
fn recording_server(agent: Agent<Machine>) -> Server<Machine> {
    Server {
        changed: Some(Box::new(|agent: &mut Agent<Machine>| agent.write_record())),
        ..server(agent, failing_kexec())
    }
}

#[test]
fn a_kexec_the_agent_did_not_ask_for_still_carries_every_session() {
    let (machine, agent) = started();
    let server = recording_server(agent);
    let hand = |name: &str, token, data: &[u8]| {
        let req = Request::Preserve {
            session: name.into(),
            token,
        };
        server.handle(0, &req, vec![memfd(data)]).0
    };
    assert_eq!(hand("a", 1, b"one"), Response::Ok);
    assert_eq!(hand("b", 2, b"two"), Response::Ok);
    assert_eq!(hand("a", 3, b"three"), Response::Ok);
    let release = Request::Release {
        session: "b".into(),
    };
    assert_eq!(server.handle(0, &release, vec![]).0, Response::Ok);
    // One record at a time: each change replaced the last.
    let records = |m: &Machine| {
        let s = m.0.lock().unwrap();
        MANIFEST_SESSIONS
            .iter()
            .filter(|n| s.live.contains_key(**n))
            .count()
    };
    assert_eq!(records(&machine), 1);
    // `kexec -e` behind the agent's back: the record went with the sessions.
    machine.kexec();
    drop(server);
    let (mut agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["adopted session \"a\" with 2 file(s)"]);
    assert_eq!(retrieve(&mut agent, "a", 3), b"three");
    assert!(agent.list().iter().all(|s| s.name != "b"));
    // The next agent's records go on from the previous kernel's number, so a record left
    // from before cannot win over a newer one.
    assert_eq!(preserve(&mut agent, "c", 1, memfd(b"c")), Response::Ok);
    agent.write_record().unwrap();
    machine.kexec();
    drop(agent);
    let (agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["adopted session \"c\" with 1 file(s)"]);
    assert_eq!(agent.list().len(), 1);
}

#[test]
fn the_newest_whole_manifest_wins_and_a_bad_checksum_is_only_reported() {
    let entry = |name: &str| Recorded {
        name: name.to_owned(),
        owner: 0,
        tokens: vec![1],
        delegated: false,
    };
    let text = format_record(7, &[entry("x")]);
    let read = parse_record(&text);
    assert!(read.intact);
    assert_eq!((read.seq, read.sessions), (7, vec![entry("x")]));
    let damaged = text.replace("x\n", "y\n");
    let read = parse_record(&damaged);
    assert!(!read.intact);
    assert_eq!(read.sessions, vec![entry("y")]);
    // An agent before numbered manifests wrote the lines alone.
    let old = parse_record("uid=0 1 x\n");
    assert!(old.intact);
    assert_eq!((old.seq, old.sessions), (0, vec![entry("x")]));

    // Two manifests crossed the kexec (the agent went down between writing one and letting
    // the other go): the newer is read, both are finished.
    let machine = Machine::default();
    for (name, data) in [("old", b"o"), ("new", b"n")] {
        let s = machine.create_session(name).unwrap();
        s.preserve_fd(memfd(data).as_fd(), 1).unwrap();
        std::mem::forget(s);
    }
    let mut records = Vec::new();
    for (i, (seq, name)) in [(4, "old"), (5, "new")].into_iter().enumerate() {
        let s = machine.create_session(MANIFEST_SESSIONS[i]).unwrap();
        s.preserve_fd(
            memfd(format_record(seq, &[entry(name)]).as_bytes()).as_fd(),
            1,
        )
        .unwrap();
        records.push(s);
    }
    machine.kexec();
    drop(records);
    let (agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["adopted session \"new\" with 1 file(s)"]);
    assert_eq!(agent.list().len(), 1);
    let state = machine.0.lock().unwrap();
    for name in MANIFEST_SESSIONS {
        assert!(
            state.finished.iter().any(|f| f == name),
            "{name} not finished"
        );
    }
}

#[test]
fn root_may_take_a_session_no_manifest_names() {
    let machine = Machine::default();
    // A session preserved behind the agent's back (or whose manifest was lost).
    let s = machine.create_session("orphan").unwrap();
    s.preserve_fd(memfd(b"found").as_fd(), 9).unwrap();
    machine.kexec();
    drop(s);
    let (mut agent, log) = Agent::start(machine.clone());
    assert_eq!(log, ["no sessions from a previous kernel"]);
    let req = Request::Retrieve {
        session: "orphan".into(),
        token: 9,
    };
    // Nothing says whose it was: another user is told there is no such session.
    let (why, _) = refusal_of(&agent.handle_as(1000, &req, vec![]).0);
    assert_eq!(why, Refusal::UnknownSession);
    assert!(agent.list().is_empty());
    assert_eq!(retrieve(&mut agent, "orphan", 9), b"found");
    // Which files it holds is not known, so it is not finished on its own: root releases it.
    assert_eq!(confirm(&mut agent, "orphan", 9), Response::Ok);
    assert_eq!(agent.list().len(), 1);
    let release = Request::Release {
        session: "orphan".into(),
    };
    assert_eq!(agent.handle(&release, vec![]).0, Response::Ok);
    assert!(machine.finished("orphan"));
}

fn preserve_as(
    agent: &mut Agent<Machine>,
    uid: u32,
    name: &str,
    token: u64,
    data: &[u8],
) -> Response {
    let req = Request::Preserve {
        session: name.into(),
        token,
    };
    agent.handle_as(uid, &req, vec![memfd(data)]).0
}

#[test]
fn a_user_cannot_hold_more_than_its_quota() {
    let (_machine, mut agent) = started();
    agent.limits = Limits {
        files_per_user: 3,
        bytes_per_user: 10,
    };
    assert_eq!(preserve_as(&mut agent, 1000, "a", 1, b"1234"), Response::Ok);
    assert_eq!(preserve_as(&mut agent, 1000, "b", 1, b"1234"), Response::Ok);
    let (why, message) = refusal_of(&preserve_as(&mut agent, 1000, "a", 2, b"123"));
    assert_eq!(why, Refusal::OverQuota);
    assert!(message.contains("11 bytes"), "{message}");
    assert_eq!(preserve_as(&mut agent, 1000, "a", 2, b"12"), Response::Ok);
    let (why, message) = refusal_of(&preserve_as(&mut agent, 1000, "c", 1, b""));
    assert_eq!(why, Refusal::OverQuota);
    assert!(message.contains("3 file(s)"), "{message}");
    // A refused file creates no session; other users and root have their own room.
    assert!(agent.list().iter().all(|s| s.name != "c"));
    assert_eq!(
        preserve_as(&mut agent, 1001, "d", 1, b"1234567890"),
        Response::Ok
    );
    for t in 1..=5 {
        assert_eq!(
            preserve_as(&mut agent, 0, "root", t, b"0123456789"),
            Response::Ok
        );
    }
    // Releasing makes room again.
    let release = Request::Release {
        session: "b".into(),
    };
    assert_eq!(agent.handle_as(1000, &release, vec![]).0, Response::Ok);
    assert_eq!(preserve_as(&mut agent, 1000, "c", 1, b"1234"), Response::Ok);
}

#[test]
fn sessions_nobody_claims_are_released_when_their_time_is_up() {
    let (machine, mut agent) = started();
    for name in ["claimed", "forgotten"] {
        assert_eq!(preserve(&mut agent, name, 1, memfd(b"x")), Response::Ok);
        assert_eq!(preserve(&mut agent, name, 2, memfd(b"y")), Response::Ok);
    }
    let (mut agent, _) = live_update(&machine, agent);
    assert_eq!(retrieve(&mut agent, "claimed", 1), b"x");
    assert_eq!(confirm(&mut agent, "claimed", 1), Response::Ok);
    assert_eq!(preserve(&mut agent, "new", 1, memfd(b"n")), Response::Ok);
    assert_eq!(agent.release_unclaimed(), ["forgotten"]);
    let names: Vec<_> = agent.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["claimed", "new"]);
    assert!(machine.finished("forgotten"));
    // Token 2 of the claimed session is still there for its client.
    assert_eq!(retrieve(&mut agent, "claimed", 2), b"y");
}

#[test]
fn the_server_releases_unclaimed_sessions_once_the_grace_time_is_over() {
    let (machine, mut agent) = started();
    assert_eq!(
        preserve(&mut agent, "forgotten", 1, memfd(b"x")),
        Response::Ok
    );
    let (agent, _) = live_update(&machine, agent);
    assert_eq!(agent.list().len(), 1);
    let dir = std::env::temp_dir().join(format!("luo-agent-grace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("agent.sock");
    let listener = luo_agent::fdpass::listen(&socket, 0o600).unwrap();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&logged);
    let server = Arc::new(Server {
        log: Box::new(move |_, line: &str| lines.lock().unwrap().push(line.to_owned())),
        // The machine has been up longer than this already.
        unclaimed_grace: Some(std::time::Duration::from_millis(1)),
        ..server(agent, failing_kexec())
    });
    std::thread::spawn(move || server.run(listener));
    let listed = Client::connect(&socket).unwrap().list().unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(machine.finished("forgotten"));
    assert!(logged
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("nobody asked for session \"forgotten\" in time")));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn delegate_as(agent: &mut Agent<Machine>, uid: u32, name: &str) -> Response {
    let req = Request::Delegate {
        session: name.into(),
    };
    match agent.handle_as(uid, &req, vec![]) {
        (r @ Response::Delegated(_), Some(_fd)) => r,
        (Response::Delegated(_), None) => panic!("DELEGATE answered without the session"),
        (r, _) => r,
    }
}

#[test]
fn a_delegated_session_is_its_clients_to_fill_and_the_agent_keeps_it() {
    const VMM: u32 = 1000;
    let (machine, mut agent) = started();
    agent.limits = Limits {
        files_per_user: 2,
        bytes_per_user: 0,
    };
    assert_eq!(
        delegate_as(&mut agent, VMM, "guest ram"),
        Response::Delegated(Direction::Outgoing)
    );
    // The client preserves two files through its descriptor, with tokens of its choosing.
    for (token, data) in [(10, b"bank 0"), (11, b"bank 1")] {
        let s = machine.0.lock().unwrap();
        drop(s);
        let session = ModelSession {
            machine: machine.clone(),
            name: "guest ram".into(),
            generation: 0,
            incoming: false,
        };
        session.preserve_fd(memfd(data).as_fd(), token).unwrap();
        std::mem::forget(session);
    }
    let (why, _) = refusal_of(&delegate_as(&mut agent, 2000, "guest ram"));
    assert_eq!(why, Refusal::NotPermitted);
    // A delegated session counts as one file against its user's quota.
    assert_eq!(preserve_as(&mut agent, VMM, "other", 1, b"x"), Response::Ok);
    let (why, _) = refusal_of(&delegate_as(&mut agent, VMM, "more"));
    assert_eq!(why, Refusal::OverQuota);
    let listed = agent.list();
    let ram = listed.iter().find(|s| s.name == "guest ram").unwrap();
    assert!(ram.delegated && ram.direction == Direction::Outgoing);
    // Across the update it stays delegated and its owner's.
    let (mut agent, log) = live_update(&machine, agent);
    assert!(
        log.contains(&"adopted session \"guest ram\" with 0 file(s)".to_owned()),
        "{log:?}"
    );
    let ram = agent
        .list()
        .into_iter()
        .find(|s| s.name == "guest ram")
        .unwrap();
    assert!(ram.delegated && ram.direction == Direction::Incoming);
    let (why, _) = refusal_of(&delegate_as(&mut agent, 2000, "guest ram"));
    assert_eq!(why, Refusal::NotPermitted);
    // Files the agent never saw can still be taken by token, and the session delegated back.
    let req = Request::Retrieve {
        session: "guest ram".into(),
        token: 11,
    };
    match agent.handle_as(VMM, &req, vec![]) {
        (Response::Ok, Some(fd)) => assert_eq!(contents(fd), b"bank 1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        delegate_as(&mut agent, VMM, "guest ram"),
        Response::Delegated(Direction::Incoming)
    );
    // The client finishes it itself; releasing it then is no error.
    {
        let s = ModelSession {
            machine: machine.clone(),
            name: "guest ram".into(),
            generation: 1,
            incoming: true,
        };
        s.finish().unwrap();
    }
    let release = Request::Release {
        session: "guest ram".into(),
    };
    assert_eq!(agent.handle_as(VMM, &release, vec![]).0, Response::Ok);
    assert!(agent.list().iter().all(|s| s.name != "guest ram"));
}

#[test]
fn a_session_holds_as_many_files_as_one_listing_shows() {
    use luo_agent::agent::MAX_TOKENS_PER_SESSION;
    let (_machine, mut agent) = started();
    for token in 0..MAX_TOKENS_PER_SESSION as u64 {
        // The longest tokens there are, for the longest listing.
        let req = Request::Preserve {
            session: "many".into(),
            token: u64::MAX - token,
        };
        assert_eq!(agent.handle(&req, vec![memfd(b"x")]).0, Response::Ok);
    }
    let (why, message) = refusal_of(&preserve(&mut agent, "many", 1, memfd(b"y")));
    assert_eq!(why, Refusal::OverQuota);
    assert!(message.contains("delegate the session"), "{message}");
    // The full session's listing fits in one message, largest tokens and all.
    let (a, b) = socketpair();
    let server = Arc::new(server(agent, failing_kexec()));
    std::thread::spawn(move || server.client(b));
    let listed = Client::from_fd(a).list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tokens.len(), MAX_TOKENS_PER_SESSION);
}

#[test]
fn every_request_is_logged_with_its_caller_and_only_changes_are_recorded() {
    let (_machine, agent) = started();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&logged);
    let changes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&changes);
    let server = Server {
        log: Box::new(move |_, line: &str| lines.lock().unwrap().push(line.to_owned())),
        changed: Some(Box::new(move |_: &mut Agent<Machine>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })),
        ..server(agent, failing_kexec())
    };
    let session = || "s".to_owned();
    let requests = [
        (
            Request::Preserve {
                session: session(),
                token: 1,
            },
            vec![memfd(b"x")],
        ),
        (
            Request::List {
                after: String::new(),
            },
            vec![],
        ),
        (
            Request::Retrieve {
                session: session(),
                token: 1,
            },
            vec![],
        ),
        (
            Request::Confirm {
                session: session(),
                token: 1,
            },
            vec![],
        ),
        (Request::Delegate { session: session() }, vec![]),
        (Request::Release { session: session() }, vec![]),
        (Request::Release { session: session() }, vec![]),
    ];
    for (req, fds) in requests {
        server.handle_from(1000, 42, &req, fds);
    }
    let lines = logged.lock().unwrap().clone();
    for want in [
        "uid 1000 pid 42: holding token 1 of session \"s\"",
        "uid 1000 pid 42: listed its sessions",
        "uid 1000 pid 42: handed back token 1 of session \"s\"",
        "uid 1000 pid 42: confirmed token 1 of session \"s\"",
        "uid 1000 pid 42: delegated session \"s\"",
        "uid 1000 pid 42: released session \"s\"",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want:?} not in {lines:?}");
    }
    // Five changes; neither the listing nor the refused second release is recorded.
    assert_eq!(changes.load(std::sync::atomic::Ordering::Relaxed), 5);
}
