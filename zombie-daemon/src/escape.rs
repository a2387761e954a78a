//! Escaping what a tenant wrote (comm, argv, cgroup names) before a terminal or a text log
//! shows it.
//!
//! A process chooses its comm and argv. Written raw to a terminal, ESC, CSI and OSC
//! sequences clear the screen, set the clipboard (OSC 52) or move the cursor to forge rows;
//! CR and LF forge table rows and log lines; bidi overrides reorder what is read. Every
//! such character is shown as text instead (`\x1b`, `\u{202e}`), so what is printed is what
//! was there. JSON output is left alone: its own escaping already keeps it one value.
//!
//! Written by hand: the crates that deal with ANSI sequences strip them (losing what the
//! tenant did, which an operator wants to see) and none covers bidi controls.

use std::{borrow::Cow, fmt::Write as _, io};

/// Whether `c` changes how a terminal shows what follows: C0 and C1 controls, DEL, and the
/// Unicode bidi formatting characters (the "Trojan Source" set) plus the line and paragraph
/// separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every control and bidi character written as an escape (`\x1b`, `\n`,
/// `\u{202e}`); borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

fn push(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) && (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A writer for text logs: each write is one formatted event (tracing-subscriber formats
/// an event into a buffer and writes it once); its control and bidi characters are
/// escaped, except the newline that ends it. A field a tenant wrote cannot start a forged
/// line or send a terminal sequence.
pub struct EscapingWriter<W>(pub W);

impl<W: io::Write> io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let escaped = escape(body);
        self.0.write_all(escaped.as_bytes())?;
        self.0.write_all(end.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["nginx: worker", "/usr/bin/app", "naïve-ünïcode 日本", ""] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn terminal_sequences_are_shown_as_text() {
        // Clear screen, OSC 52 clipboard write, a forged row, bidi override.
        assert_eq!(escape("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(
            escape("x\x1b]52;c;Y3VybCBldmlsCg==\x07"),
            "x\\x1b]52;c;Y3VybCBldmlsCg==\\x07"
        );
        assert_eq!(escape("a\r\n1 1 kubelet"), "a\\r\\n1 1 kubelet");
        assert_eq!(escape("ab\u{202e}cd"), "ab\\u{202e}cd");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape("tab\there\x7f"), "tab\\there\\x7f");
        for s in ["\x1b", "\r", "\n", "\u{2066}", "\u{200f}", "\u{2028}"] {
            assert!(!escape(s).chars().any(is_unsafe), "{s:?}");
        }
    }

    #[test]
    fn log_lines_keep_their_end_and_lose_forged_ones() {
        let mut out = Vec::new();
        let mut w = EscapingWriter(&mut out);
        w.write_all(b"INFO remediation decision comm=x\nERROR forged\x1b[2J\n")
            .unwrap();
        w.write_all(b"INFO next\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "INFO remediation decision comm=x\\nERROR forged\\x1b[2J\nINFO next\n"
        );
        assert_eq!(text.lines().count(), 2);
    }
}
