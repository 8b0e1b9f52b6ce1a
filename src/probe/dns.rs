//! DNS probe.

use super::{Context, Outcome, Passed};

pub(super) async fn check(
    _context: &Context<'_>,
    _name: &str,
    _outside_name: Option<&str>,
) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "dns probe not implemented yet".into(),
    })
}
