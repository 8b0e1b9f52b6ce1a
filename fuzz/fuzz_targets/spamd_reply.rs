//! Feeds the input as spamd's reply to PING to the PONG parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::spamd_pong(data) {
        Ok(Some(detail)) => {
            check_detail(&detail);
            assert!(detail.starts_with("SPAMD/1."), "{detail:?}");
        }
        Ok(None) => {}
        Err(outcome) => check_outcome(&outcome),
    }
});
