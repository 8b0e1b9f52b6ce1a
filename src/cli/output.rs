//! Standard output of the commands. A reader that stops early, such as `selfheal status --json
//! | head -1`, closes the pipe; the next write then fails with EPIPE, because Rust programs
//! ignore SIGPIPE. `println!` would panic on that error, so the commands write through
//! [`write_stdout`], which ends the process quietly instead. The daemon keeps ignoring
//! SIGPIPE, so a peer that closes a socket or a pipe never kills it.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Exit status after the reader closed standard output: what a shell reports for a program
/// that SIGPIPE ended (128 + 13), so `set -o pipefail` scripts see the usual value.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes `text` to standard output and flushes it, so that a closed pipe shows up here and
/// not at exit. Ends the process with [`EXIT_BROKEN_PIPE`] when the reader has gone, and
/// with status 1 and a message on stderr for any other write error.
pub fn write_stdout(text: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(text).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(EXIT_BROKEN_PIPE),
        Err(error) => {
            eprintln!("selfheal: cannot write to standard output: {error}");
            std::process::exit(1);
        }
    }
}
