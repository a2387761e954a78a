//! Decoding the raw wait status the kernel keeps for a zombie (what wait() would return).

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WaitStatus {
    /// The exit code when it exited normally.
    pub exit_code: Option<u8>,
    /// The signal that killed it.
    pub signal: Option<u8>,
    pub core_dumped: bool,
}

impl WaitStatus {
    pub fn decode(status: u32) -> Self {
        let sig = (status & 0x7f) as u8;
        if sig == 0 {
            Self {
                exit_code: Some(((status >> 8) & 0xff) as u8),
                signal: None,
                core_dumped: false,
            }
        } else {
            Self {
                exit_code: None,
                signal: Some(sig),
                core_dumped: status & 0x80 != 0,
            }
        }
    }

    /// "exit 3", "SIGKILL", "SIGSEGV (core)".
    pub fn describe(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => {
                let name = signal_name(sig);
                if self.core_dumped {
                    format!("{name} (core)")
                } else {
                    name
                }
            }
            (None, None) => "?".into(),
        }
    }
}

pub fn signal_name(sig: u8) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(sig as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("SIG{sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_normal_exit_and_signals() {
        assert_eq!(
            WaitStatus::decode(3 << 8),
            WaitStatus {
                exit_code: Some(3),
                signal: None,
                core_dumped: false
            }
        );
        let killed = WaitStatus::decode(9);
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
        assert_eq!(killed.describe(), "SIGKILL");
        assert_eq!(WaitStatus::decode(11 | 0x80).describe(), "SIGSEGV (core)");
        assert_eq!(WaitStatus::decode(0).describe(), "exit 0");
    }
}
