//! Feeds the input as the server's DER certificate to the expiry check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::certificate_expiry(data) {
        Ok(Some(warning)) => check_detail(&warning),
        Ok(None) => {}
        Err(outcome) => check_outcome(&outcome),
    }
});
