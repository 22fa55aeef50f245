//! The protocol parsers on a million inputs no peer should send: random bytes, and valid
//! messages with bytes changed, cut or repeated. Each parse must return, `Ok` or `Err`,
//! without a panic (cargo test builds with overflow checks, so a length that wraps panics).

use luo_agent::proto::{Direction, Refusal, Request, Response, SessionInfo};

const INPUTS: usize = 1_000_000;

/// xorshift64: the same inputs at every run, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        Request::Preserve {
            session: "vm 1: guest RAM".into(),
            token: u64::MAX,
        },
        Request::List {
            after: "cache".into(),
        },
        Request::Retrieve {
            session: "cache".into(),
            token: 7,
        },
        Request::Release {
            session: "x:y".into(),
        },
        Request::Kexec {
            kernel: "/boot/vmlinuz".into(),
            initrd: String::new(),
            cmdline: "console=ttyS0 liveupdate=on".into(),
        },
    ]
    .iter()
    .map(Request::encode)
    .collect();
    v.extend(
        [
            Response::Ok,
            Response::Sessions(vec![SessionInfo {
                name: "one two".into(),
                direction: Direction::Incoming,
                tokens: vec![1, u64::MAX],
                delegated: true,
            }]),
            Response::Refused {
                why: Refusal::Busy,
                errno: 16,
                message: "busy".into(),
            },
        ]
        .iter()
        .map(Response::encode),
    );
    v
}

/// Digits and separators the parsers look for, to reach their deeper paths more often.
const INTERESTING: &[&[u8]] = &[
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b":",
    b" ",
    b"0:",
    b"-1",
    b"\0",
    b"\xff",
];

fn mutate(rng: &mut Rng, msg: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !msg.is_empty() => {
                let i = rng.below(msg.len());
                msg[i] = rng.next() as u8;
            }
            1 if !msg.is_empty() => msg.truncate(rng.below(msg.len())),
            2 => {
                let at = rng.below(msg.len() + 1);
                let what = INTERESTING[rng.below(INTERESTING.len())];
                msg.splice(at..at, what.iter().copied());
            }
            3 if !msg.is_empty() => {
                let a = rng.below(msg.len());
                let b = a + rng.below(msg.len() - a);
                let copy = msg[a..b].to_vec();
                msg.splice(b..b, copy);
            }
            4 if !msg.is_empty() => {
                msg.remove(rng.below(msg.len()));
            }
            _ => msg.push(rng.next() as u8),
        }
    }
}

#[test]
fn a_million_malformed_messages_parse_without_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x1_0000_0001);
    let (mut ok, mut refused) = (0usize, 0usize);
    for i in 0..INPUTS {
        let msg = if i % 4 == 0 {
            (0..rng.below(48)).map(|_| rng.next() as u8).collect()
        } else {
            let mut m = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut m);
            m
        };
        let results = [
            Request::decode(&msg).is_ok(),
            Response::decode(&msg).is_ok(),
        ];
        for r in results {
            if r {
                ok += 1;
            } else {
                refused += 1;
            }
        }
    }
    // The inputs reached both outcomes: the mutations keep some messages valid.
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert_eq!(ok + refused, 2 * INPUTS);
}

#[test]
fn the_written_protocol_examples_parse() {
    let doc = include_str!("../PROTOCOL.md");
    let examples: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(examples.len(), 3, "{examples:?}");
    for e in examples {
        let m = e.as_bytes();
        assert!(
            Request::decode(m).is_ok() || Response::decode(m).is_ok(),
            "PROTOCOL.md's example {e:?} does not parse"
        );
    }
}
