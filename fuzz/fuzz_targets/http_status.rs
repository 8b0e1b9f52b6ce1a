//! Feeds the input as an HTTP response to the status line reader, which skips 1xx responses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::http_status(data) {
        Ok((detail, code)) => {
            check_detail(&detail);
            assert!((100..600).contains(&code), "status code {code}");
            assert!(
                !(100..200).contains(&code) || code == 101,
                "interim code {code}"
            );
        }
        Err(outcome) => check_outcome(&outcome),
    }
});
