//! The `[dashboard]` table.

use super::checker::{Checker, Field, Keys};
use crate::config::DashboardConfig;

const DASHBOARD_KEYS: Keys = &[(
    "public_url",
    r#"public_url = "https://mail.example.org/selfheal/""#,
)];

impl Checker<'_> {
    pub(super) fn dashboard(&mut self, field: &Field<'_>) -> DashboardConfig {
        let mut dashboard = DashboardConfig::default();
        let Some(table) = self.table(field, "a table such as [dashboard]") else {
            return dashboard;
        };
        for entry in self.fields(table, &field.path, field.line, &[DASHBOARD_KEYS]) {
            match entry.name {
                "public_url" => dashboard.public_url = self.public_url(&entry),
                _ => self.unknown_key(&entry, &[DASHBOARD_KEYS]),
            }
        }
        dashboard
    }

    /// Reads an absolute http or https URL without spaces, as alerts link to it.
    fn public_url(&mut self, field: &Field<'_>) -> Option<String> {
        let url = self.string(field)?;
        let has_scheme = url.starts_with("https://") || url.starts_with("http://");
        let host_present = url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
        if !has_scheme || !host_present || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.invalid(
                field,
                format!(
                    "public_url \"{url}\" is not an absolute http or https URL; write the \
                     address admins open, such as \"https://mail.example.org/selfheal/\""
                ),
            );
            return None;
        }
        Some(url.to_string())
    }
}
