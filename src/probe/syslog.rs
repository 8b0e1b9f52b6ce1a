//! syslog probe.

use super::{Context, Outcome, Passed};

pub(super) async fn check(_context: &Context<'_>) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "syslog probe not implemented yet".into(),
    })
}
