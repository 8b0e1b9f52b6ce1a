//! Feeds the input as an IMAP server's greeting and CAPABILITY reply to the IMAP parsers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::imap_session(data) {
        Ok((detail, capabilities)) => {
            check_detail(&detail);
            assert!(capabilities.iter().all(|capability| !capability.is_empty()));
        }
        Err(outcome) => check_outcome(&outcome),
    }
});
