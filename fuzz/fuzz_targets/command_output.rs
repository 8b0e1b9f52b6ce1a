//! Feeds the input as a program's output to the last-line extraction of the fail2ban probe.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Some(line) = fuzzing::command_last_line(data) {
        assert!(!line.is_empty(), "an empty last line");
        // Each invalid byte becomes U+FFFD, which takes 3 bytes in UTF-8.
        assert!(line.len() <= data.len() * 3, "{line:?}");
    }
});
