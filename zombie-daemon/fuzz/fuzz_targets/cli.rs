//! Any argument vector (the input split on NUL bytes, any bytes in an argument): clap
//! either parses it or returns an error that renders; never a panic. What parses holds
//! the ranges the flags promise.
#![no_main]

use std::{ffi::OsString, os::unix::ffi::OsStringExt};

use clap::{Parser, error::ErrorKind};
use libfuzzer_sys::fuzz_target;
use zombie_daemon::cli::{Cli, Command};

fuzz_target!(|data: &[u8]| {
    let args = std::iter::once(OsString::from("zombie-daemon")).chain(
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    match Cli::try_parse_from(args) {
        Ok(cli) => match cli.command {
            Command::Run(run) => {
                let ring = run.ring_buffer_bytes;
                assert!(ring.is_power_of_two() && ring >= 4096, "{ring}");
                assert!((1..=1000).contains(&run.drain_interval_ms));
            }
            Command::List(_) | Command::Check(_) | Command::Audit(_) | Command::Calibrate(_) => {}
        },
        Err(e) => {
            let text = e.render().to_string();
            assert!(!text.is_empty());
            let help = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            assert_eq!(e.exit_code(), if help { 0 } else { 2 }, "{text}");
        }
    }
});
