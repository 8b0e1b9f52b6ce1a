//! Feeds the input as a MySQL server's first packet to the packet reader and the handshake
//! parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::check_outcome;

fuzz_target!(|data: &[u8]| {
    match fuzzing::mysql_handshake(data) {
        // The version has at most 4096 bytes, the packet limit, and only printable ASCII.
        Ok(server) => {
            assert!(server.len() <= 4096 + "MySQL ".len(), "{server:?}");
            assert!(!server.chars().any(char::is_control), "{server:?}");
        }
        Err(outcome) => check_outcome(&outcome),
    }
});
