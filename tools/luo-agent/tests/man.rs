//! The manual pages in `man/` are made from the command lines' definitions (`luo_agent::cli`),
//! so they say what `--help` says. This test fails when they drift apart;
//! `LUO_UPDATE_MAN=1 cargo test --test man` writes them anew.

use clap::CommandFactory;
use luo_agent::cli::{AgentCli, LuoctlCli};
use std::path::Path;

fn page(cmd: clap::Command, section: &str) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("luo-agent")
        .render(&mut out)
        .unwrap();
    out
}

#[test]
fn the_manual_pages_are_those_of_the_command_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("LUO_UPDATE_MAN").is_some();
    let luoctl = LuoctlCli::command();
    let mut pages = vec![
        ("luo-agent.8".to_owned(), page(AgentCli::command(), "8")),
        ("luoctl.1".to_owned(), page(luoctl.clone(), "1")),
    ];
    // A page per subcommand, which luoctl(1) refers to.
    for sub in luoctl.get_subcommands() {
        let name: &'static str = format!("luoctl-{}", sub.get_name()).leak();
        pages.push((
            format!("{name}.1"),
            page(sub.clone().name(name).bin_name(name), "1"),
        ));
    }
    for (file, made) in pages {
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &made).unwrap();
            continue;
        }
        let kept = std::fs::read(&path).unwrap_or_default();
        assert!(
            kept == made,
            "{} is not what the command line says; run LUO_UPDATE_MAN=1 cargo test --test man",
            path.display()
        );
    }
}
