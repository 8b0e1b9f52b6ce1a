//! Feeds the input as a UDP datagram from the resolver to the DNS reply matcher.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::dns_reply(data) {
        Ok(Some(summary)) => check_detail(&summary),
        Ok(None) => {}
        Err(outcome) => check_outcome(&outcome),
    }
});
