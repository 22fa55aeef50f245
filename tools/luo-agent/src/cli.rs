//! The command lines of `luo-agent` and `luoctl`, in the library so that their manual pages
//! are made from the same definitions (`cargo run --example man`) as their `--help`.

use crate::client::SOCKET;
use clap::{Parser, Subcommand};

fn octal_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not a file mode in octal (0 to 777)")),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "luo-agent",
    about = "Hold live update sessions for other programs",
    long_about = "Hold live update sessions for other programs.\n\n\
        luo-agent owns /dev/liveupdate: services hand it the files they want carried across \
        a live update (a kexec into a new kernel that keeps chosen memory), it preserves them \
        in sessions, loads the next kernel when asked, and in the new kernel hands each file \
        back to the service that asks for it (see luoctl(1)).\n\n\
        Every client is known by its uid (SO_PEERCRED): it owns the sessions it creates and \
        sees and acts on those only; only root may live update the machine. The socket is \
        root's alone (mode 0600) unless --socket-mode opens it.\n\n\
        With --systemd (as luo-agent.service) the agent opens the device only for each call, \
        keeps its sessions in systemd's fd store, which systemd carries across \
        'systemctl kexec' and gives back at every start, and takes its socket from \
        luo-agent.socket when systemd passes one."
)]
pub struct AgentCli {
    /// Where clients connect (unless systemd passes a listening socket).
    #[arg(long, default_value = SOCKET)]
    pub socket: String,
    /// The socket file's mode, in octal: 600 root only, 666 every user.
    #[arg(long, default_value = "600", value_parser = octal_mode)]
    pub socket_mode: u32,
    /// The live update device.
    #[arg(long, default_value = liveupdate::DEVICE)]
    pub device: String,
    /// Run as luo-agent.service: device opened per call, sessions in the fd store.
    #[arg(long)]
    pub systemd: bool,
    /// At most this many files held for each user other than root (0: no limit).
    #[arg(long, default_value_t = 4096)]
    pub max_files_per_user: usize,
    /// At most this many bytes of files (their sizes) held for each user other than root
    /// (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_bytes_per_user: u64,
    /// Release a session of the previous kernel that nobody asked for within this many
    /// seconds of boot, so that its memory is not pinned for good (0: keep it).
    #[arg(long, default_value_t = 0)]
    pub unclaimed_grace: u64,
}

#[derive(Parser)]
#[command(
    name = "luoctl",
    about = "Ask luo-agent to hold files across a live update and give them back after it",
    after_help = "Exit status: 0 done, 2 bad usage, 3 agent unreachable, 4 conversation \
                  failed, 5 CMD could not run, 10-20 refused by the agent (10 bad request, \
                  11 unknown session, 12 unknown token, 13 duplicate token, 14 busy, \
                  15 unsupported file, 16 invalid name, 17 kernel, 18 failed, 19 not permitted, \
                  20 over quota)"
)]
pub struct LuoctlCli {
    /// The agent's socket.
    #[arg(long, default_value = SOCKET)]
    pub socket: String,
    /// Print results and refusals as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: LuoctlCmd,
}

#[derive(Subcommand)]
pub enum LuoctlCmd {
    /// Hand a file to the agent, to be carried across the next live update.
    Preserve {
        session: String,
        token: u64,
        /// The file to hand over (opened read-write).
        #[arg(required_unless_present = "fd", conflicts_with = "fd")]
        path: Option<String>,
        /// Hand over this open descriptor of luoctl instead.
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        fd: Option<i32>,
    },
    /// The sessions the agent holds for you (all of them for root).
    List,
    /// Get a file back after the live update: copy its contents to standard output, or run
    /// CMD with it as descriptor 3 (LISTEN_FDS=1, LISTEN_FDNAMES=SESSION, as systemd passes
    /// descriptors). Once that worked, luoctl confirms it to the agent, which then lets go of
    /// its copy; if it failed, the file can be retrieved again.
    Retrieve {
        session: String,
        token: u64,
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Let go of a session now (an incoming one is finished).
    Release { session: String },
    /// Run CMD with the session itself as descriptor 3 (LISTEN_FDS=1,
    /// LISTEN_FDNAMES=SESSION), for a program that preserves its files into it directly
    /// (before the update: a VMM with its guest memory) or retrieves and finishes them (after
    /// it). The agent keeps the session meanwhile and after an outgoing one until the update;
    /// once CMD succeeded with an incoming one, luoctl releases it.
    Delegate {
        session: String,
        #[arg(last = true, value_name = "CMD", required = true)]
        cmd: Vec<String>,
    },
    /// Live update into KERNEL (root only). The agent checks that CMDLINE keeps live update
    /// on (liveupdate=on) and that KERNEL and INITRD are regular files, loads them, and has
    /// the machine kexec (through systemd when it runs under systemd).
    Kexec {
        kernel: String,
        /// The initramfs, or '' to boot without one.
        initrd: String,
        cmdline: String,
    },
}
