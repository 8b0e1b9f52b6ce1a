//! SMTP, LMTP, IMAP and POP3 probes.

use super::{Context, Outcome, Passed};

pub(super) async fn smtp(
    _context: &Context<'_>,
    _helo_name: &str,
    _verb: &str,
) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "smtp probe not implemented yet".into(),
    })
}

pub(super) async fn imap(_context: &Context<'_>) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "imap probe not implemented yet".into(),
    })
}

pub(super) async fn pop3(_context: &Context<'_>) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "pop3 probe not implemented yet".into(),
    })
}
