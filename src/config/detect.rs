//! Service detection: which presets are installed on this host, and a starter config for them.

use std::future::Future;

use super::presets::{presets, Preset};
use crate::manager::Managers;

/// A preset found installed, with the unit it was found as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub preset: &'static Preset,
    /// First of the preset's candidate units that exists in the service manager.
    pub unit: &'static str,
    /// Running, failed, or enabled at boot. A disabled and stopped service is installed but not
    /// in use, and selfheal does not watch it unless the config says so.
    pub in_use: bool,
}

/// Finds the installed presets by asking the service manager for each candidate unit.
pub async fn detect(managers: &Managers) -> Vec<Detection> {
    let mut found = detect_with(|unit| managers.unit_exists(unit)).await;
    for detection in &mut found {
        detection.in_use = managers.unit_in_use(detection.unit).await;
    }
    found
}

/// Finds the installed presets with `unit_exists` as the check, in preset order. A preset
/// counts as installed through its first candidate unit that exists; a preset with none is
/// left out. Units are checked one at a time.
pub async fn detect_with<F, Fut>(mut unit_exists: F) -> Vec<Detection>
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut found = Vec::new();
    for preset in presets() {
        for unit in preset.units {
            if unit_exists(unit).await {
                found.push(Detection {
                    preset,
                    unit,
                    in_use: true,
                });
                break;
            }
        }
    }
    found
}

/// Renders a commented config that enables the detected presets, with the alert settings as a
/// commented-out example. The text parses with [`super::parse_str`] without errors.
pub fn render_config(found: &[Detection]) -> String {
    let mut text = String::from(
        "# selfheal configuration. docs/config.md in the selfheal sources describes every key.\n\
         # Written from the services found on this host; edit it freely.\n\
         \n\
         # Time between two checks of every service.\n\
         interval = \"30s\"\n\
         # \"heal\" restarts a service found down; \"watch\" only reports it.\n\
         mode = \"heal\"\n\
         \n\
         # Alert email, sent when selfheal cannot heal a service. Uncomment and fill in.\n\
         # [alerts]\n\
         # from = \"selfheal@mail.example.org\"\n\
         # to = [\"admin@example.org\"]\n\
         #\n\
         # # SMTP relays, tried in order before the local sendmail.\n\
         # [[alerts.relay]]\n\
         # host = \"smtp.example.net\"\n\
         # port = 587\n\
         # tls = \"starttls\"\n\
         # username = \"selfheal\"\n\
         # password_file = \"/etc/selfheal/relay-password\"\n",
    );

    if found.is_empty() {
        text.push_str(
            "\n\
             # No covered service was found on this host. Add a preset or a custom service:\n\
             # [services.postfix]\n\
             #\n\
             # [services.ai-filter]\n\
             # unit = \"ai-filter.service\"\n\
             # probe = { tcp = \"127.0.0.1:10030\" }\n",
        );
        return text;
    }

    text.push_str(
        "\n# Services found on this host. Any key set in a preset's table overrides the\n\
         # preset's value. Setting `enabled` to false leaves a service alone.\n",
    );
    for detection in found {
        let preset = detection.preset;
        if detection.in_use {
            text.push_str(&format!(
                "\n# {}, found as {}.\n[services.{}]\n",
                preset.title, detection.unit, preset.name
            ));
        } else {
            // Enabling it would make selfheal start a service the admin turned off.
            text.push_str(&format!(
                "\n# {}, found as {}, but disabled and stopped: in heal mode selfheal would\n\
                 # start it. Uncomment to watch it anyway.\n# [services.{}]\n",
                preset.title, detection.unit, preset.name
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::ready;
    use std::path::Path;

    use super::*;
    use crate::config::{parse_str, preset};

    fn names(found: &[Detection]) -> Vec<&'static str> {
        found
            .iter()
            .map(|detection| detection.preset.name)
            .collect()
    }

    #[tokio::test]
    async fn nothing_installed_finds_nothing() {
        let found = detect_with(|_| ready(false)).await;
        assert!(found.is_empty());
    }

    #[tokio::test]
    async fn first_existing_candidate_wins() {
        let installed: HashSet<&str> = ["postfix.service", "postfix@-.service", "mysql.service"]
            .into_iter()
            .collect();
        let found = detect_with(|unit| ready(installed.contains(unit))).await;
        assert_eq!(names(&found), ["postfix", "mariadb"]);
        assert_eq!(found[0].unit, "postfix@-.service");
        assert_eq!(found[1].unit, "mysql.service");
    }

    #[tokio::test]
    async fn rhel_names_detected() {
        let installed: HashSet<&str> = ["httpd.service", "spamassassin.service", "postfix.service"]
            .into_iter()
            .collect();
        let found = detect_with(|unit| ready(installed.contains(unit))).await;
        assert_eq!(names(&found), ["postfix", "spamd", "apache"]);
        assert_eq!(found[0].unit, "postfix.service");
    }

    #[tokio::test]
    async fn stops_at_first_candidate() {
        let mut requested = Vec::new();
        let found = detect_with(|unit| {
            requested.push(unit);
            ready(unit == "mariadb.service")
        })
        .await;
        assert_eq!(names(&found), ["mariadb"]);
        assert!(requested.contains(&"mariadb.service"));
        assert!(!requested.contains(&"mysql.service"));
        assert!(requested.contains(&"httpd.service"));
    }

    #[test]
    fn rendered_config_loads() {
        let found: Vec<Detection> = crate::config::presets()
            .iter()
            .map(|preset| Detection {
                in_use: true,
                preset,
                unit: preset.units[preset.units.len() - 1],
            })
            .collect();
        let text = render_config(&found);
        let config = match parse_str(&text, Path::new("rendered.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("rendered config has errors:\n{errors}\n{text}"),
        };
        let expected: Vec<&str> = crate::config::presets().iter().map(|p| p.name).collect();
        assert_eq!(config.service_names(), expected);
        assert!(config.alerts.to.is_empty());
        assert!(text.contains("found as mysqld.service"));
    }

    #[test]
    fn rendered_empty_config_loads() {
        let text = render_config(&[]);
        let config = match parse_str(&text, Path::new("rendered.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("rendered config has errors:\n{errors}\n{text}"),
        };
        assert!(config.services.is_empty());
        assert!(text.contains("# [services.postfix]"));
    }

    #[test]
    fn disabled_service_is_commented_out() {
        let Some(nginx) = preset("nginx") else {
            panic!("nginx preset missing");
        };
        let text = render_config(&[Detection {
            preset: nginx,
            unit: "nginx.service",
            in_use: false,
        }]);
        assert!(text.contains("# [services.nginx]"), "{text}");
        assert!(!text.contains("\n[services.nginx]"), "{text}");
        assert!(text.contains("disabled and stopped"), "{text}");
    }

    #[test]
    fn rendered_alerts_example_loads_uncommented() {
        let Some(postfix) = preset("postfix") else {
            panic!("postfix preset missing");
        };
        let text = render_config(&[Detection {
            preset: postfix,
            unit: "postfix@-.service",
            in_use: true,
        }]);
        // Uncommenting the alert block must give a valid config. The login lines are left out
        // because the password file does not exist here.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => line,
            })
            .filter(|line| !line.contains("password_file") && !line.contains("username"))
            .map(|line| format!("{line}\n"))
            .collect();
        match parse_str(&uncommented, Path::new("rendered.toml")) {
            Ok(config) => {
                assert_eq!(config.alerts.to, ["admin@example.org"]);
                assert_eq!(config.alerts.relays.len(), 1);
                assert_eq!(config.service_names(), ["postfix"]);
            }
            Err(errors) => panic!("uncommented config has errors:\n{errors}\n{uncommented}"),
        }
    }
}
