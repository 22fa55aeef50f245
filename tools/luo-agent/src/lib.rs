//! An agent that holds live update sessions for other programs, and its client library.
//!
//! Sessions of the Live Update Orchestrator live only as long as their file descriptors. A
//! service that wants its memory back after a live update therefore needs someone to hold its
//! files until the kexec and to give them back afterwards, even if the service itself restarts.
//! `luo-agent` is that someone: it owns `/dev/liveupdate`, takes files from clients over a Unix
//! socket ([`client::Client::preserve`]), loads the next kernel and kexecs into it when asked,
//! and in the next kernel hands each client its files back ([`client::Client::retrieve`]).
//!
//! ```no_run
//! use luo_agent::client::{Client, SOCKET};
//! use std::os::fd::AsFd;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let memfd = std::fs::File::open("/dev/null")?;
//! // Before the live update: hand the memfd over; the service may exit now.
//! let agent = Client::connect(SOCKET)?;
//! agent.preserve("my-cache", 1, memfd.as_fd())?;
//!
//! // After it: get it back (the agent finishes the session once every file is back).
//! let agent = Client::connect(SOCKET)?;
//! let memfd = agent.retrieve("my-cache", 1)?;
//! # Ok(())
//! # }
//! ```

pub mod agent;
pub mod cli;
pub mod client;
pub mod fdpass;
pub mod kexec;
pub mod log;
pub mod proto;
pub mod server;
pub mod sys;
pub mod systemd;
