//! The one redaction of command lines, for every output that shows one (`/zombies`,
//! `/audit`, `list`, `audit`, remedies).
//!
//! Arguments often carry tokens and passwords, and the API is readable by whoever reaches
//! the port; the program is what a reader needs. A process that rewrites its title (nginx,
//! postgres, anything using setproctitle) keeps its whole title in argv[0], spaces and
//! secrets included, so argv[0] is cut at its first whitespace too: what is kept is the
//! command line up to its first whitespace, whatever the argv split.

/// What stands in for a command line's arguments unless `--show-cmdlines` is given.
pub const REDACTED: &str = "[redacted]";

/// A command line as shown: in full with `show` (words joined with spaces), else argv[0]
/// up to its first whitespace, followed by [`REDACTED`] when anything was cut.
pub fn command_line(argv: &[String], show: bool) -> String {
    let joined = argv.join(" ");
    joined_command_line(&joined, show)
}

/// [`command_line`] for a command line already joined with spaces (the audit keeps it so).
pub fn joined_command_line(cmdline: &str, show: bool) -> String {
    if show {
        return cmdline.to_string();
    }
    let trimmed = cmdline.trim_start();
    match trimmed.split_once(char::is_whitespace) {
        None => trimmed.to_string(),
        Some((program, rest)) if rest.trim().is_empty() => program.to_string(),
        Some((program, _)) => format!("{program} {REDACTED}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn only_the_program_is_kept_unless_shown() {
        let secret = argv(&["/usr/bin/app", "--token=s3cr3t", "serve"]);
        assert_eq!(command_line(&secret, false), "/usr/bin/app [redacted]");
        assert_eq!(
            command_line(&secret, true),
            "/usr/bin/app --token=s3cr3t serve"
        );
        assert_eq!(command_line(&argv(&["sleep"]), false), "sleep");
        assert_eq!(command_line(&[], false), "");
        assert_eq!(command_line(&[], true), "");
    }

    #[test]
    fn a_rewritten_title_in_argv0_is_redacted_like_arguments() {
        // setproctitle: one argv element with spaces.
        let title = argv(&["myapp --db-password=s3cr3t --serve"]);
        assert_eq!(command_line(&title, false), "myapp [redacted]");
        assert_eq!(
            command_line(&argv(&["nginx: master process"]), false),
            "nginx: [redacted]"
        );
        assert_eq!(
            command_line(&argv(&["postgres:\tuser=s3cr3t", ""]), false),
            "postgres: [redacted]"
        );
        // The joined form gives the same answer for the same words.
        for a in [title, argv(&["/app", "-p", "x"]), argv(&["one"])] {
            assert_eq!(
                command_line(&a, false),
                joined_command_line(&a.join(" "), false)
            );
            assert!(!command_line(&a, false).contains("s3cr3t"));
        }
    }
}
