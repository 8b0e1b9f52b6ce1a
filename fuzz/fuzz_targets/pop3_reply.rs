//! Feeds the input as a POP3 server's greeting and STLS reply to the POP3 parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::pop3_session(data) {
        Ok((detail, _upgraded)) => check_detail(&detail),
        Err(outcome) => check_outcome(&outcome),
    }
});
