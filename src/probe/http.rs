//! HTTP(S) probe.

use super::{Context, Outcome, Passed, StatusClass};

pub(super) async fn check(
    _context: &Context<'_>,
    _path: &str,
    _host: &str,
    _expect: StatusClass,
) -> Result<Passed, Outcome> {
    Err(Outcome::Failed {
        error: "http probe not implemented yet".into(),
    })
}
