//! Feeds the input as an SMTP server's greeting and EHLO reply to the SMTP reply parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::probe::fuzzing;
use selfheal_fuzz::{check_detail, check_outcome};

fuzz_target!(|data: &[u8]| {
    match fuzzing::smtp_session(data) {
        Ok(summary) => {
            if let Some(detail) = &summary.detail {
                check_detail(detail);
            }
            assert_eq!(
                summary.offers_starttls,
                summary.keywords.iter().any(|keyword| keyword == "STARTTLS")
            );
        }
        Err(outcome) => check_outcome(&outcome),
    }
});
