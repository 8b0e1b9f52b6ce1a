//! MySQL/MariaDB probe.

use std::path::Path;

use super::{Context, Outcome, Passed};

pub(super) async fn check(
    _context: &Context<'_>,
    _credentials: Option<&Path>,
) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "mysql probe not implemented yet".into(),
    })
}
