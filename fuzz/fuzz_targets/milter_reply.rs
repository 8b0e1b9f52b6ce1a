//! Feeds the input as a milter's reply to option negotiation to the packet reader and the
//! OPTNEG parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::check_outcome;

fuzz_target!(|data: &[u8]| {
    match fuzzing::milter_reply(data) {
        Ok(version) => assert!((2..=6).contains(&version), "version {version}"),
        Err(outcome) => check_outcome(&outcome),
    }
});
