//! Command probe.

use super::{Context, Outcome, Passed};

pub(super) async fn check(_context: &Context<'_>, _argv: &[String]) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "command probe not implemented yet".into(),
    })
}
