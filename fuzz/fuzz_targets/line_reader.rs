//! Feeds the input as a server's bytes to `LineReader::read_line` until it fails.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_line, check_outcome};

fuzz_target!(|data: &[u8]| {
    let (lines, outcome) = fuzzing::read_lines(data);
    for line in &lines {
        check_line(line);
    }
    if let Some(outcome) = outcome {
        check_outcome(&outcome);
    }
});
