//! Which cache entry a credential request maps to and, for the `github-app` source, which
//! installation mints for it.
//!
//! The key is the host (lower-case, `:port` unless 443). With the `github-app` source and
//! `credential.useHttpPath`, git sends `path=OWNER/REPO.git` and the owner picks the
//! installation: the key becomes `HOST/OWNER` (DESIGN.md leaves room for such keys). The
//! platform source ignores the path: it has one token per workspace.

use crate::cache::Entry;
use crate::config::{Config, TokenSourceKind};
use crate::error::{Class, Error, Result};
use crate::protocol::Request;

/// Where a credential request is routed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The normalised host.
    pub host: String,
    /// The repository owner (lower-case), when it selects the installation.
    pub owner: Option<String>,
}

impl Target {
    /// The host-level target.
    pub fn host(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            owner: None,
        }
    }

    /// The cache key: `HOST` or `HOST/OWNER`.
    pub fn key(&self) -> String {
        match &self.owner {
            Some(o) => format!("{}/{o}", self.host),
            None => self.host.clone(),
        }
    }

    /// The target a cache key stands for.
    pub fn from_key(key: &str) -> Self {
        match key.split_once('/') {
            Some((host, owner)) => Self {
                host: host.to_owned(),
                owner: Some(owner.to_owned()),
            },
            None => Self::host(key),
        }
    }
}

/// A GitHub owner name (user or organisation): starts with a letter or digit, then letters,
/// digits and `-` (`_` and `.` too, for GitHub Enterprise's wider rules). Never `.` or `..`.
pub fn is_owner(s: &str) -> bool {
    s.len() <= 100
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The target of a request: `Some` only for `protocol=https` and a configured host.
pub fn target(config: &Config, request: &Request) -> Option<Target> {
    if request.protocol.as_deref() != Some("https") {
        return None;
    }
    let host = config.serves_host(request.host.as_deref()?)?;
    let owner = match config.token_source {
        TokenSourceKind::GithubApp => request
            .path
            .as_deref()
            .and_then(|p| p.trim_start_matches('/').split('/').next())
            .filter(|o| is_owner(o))
            .map(str::to_ascii_lowercase),
        TokenSourceKind::Platform | TokenSourceKind::File => None,
    };
    Some(Target { host, owner })
}

/// The target a command names with `--host` and `--owner`: a configured host (default: the
/// first of `MOLECULE_GIT_HOSTS`), and an owner only for the `github-app` source.
pub fn pick(config: &Config, host: Option<&str>, owner: Option<&str>) -> Result<Target> {
    let host = match host {
        Some(h) => config.serves_host(h).ok_or_else(|| {
            Error::new(
                Class::LocalConfig,
                format!("--host {h:?} is not one of MOLECULE_GIT_HOSTS"),
            )
        })?,
        None => config
            .hosts
            .first()
            .cloned()
            .ok_or_else(|| Error::new(Class::LocalConfig, "MOLECULE_GIT_HOSTS is empty"))?,
    };
    let owner = match owner {
        None => None,
        Some(_) if config.token_source != TokenSourceKind::GithubApp => {
            return Err(Error::new(
                Class::LocalConfig,
                "--owner selects an installation of the github-app source",
            ));
        }
        Some(o) if is_owner(o) => Some(o.to_ascii_lowercase()),
        Some(o) => {
            return Err(Error::new(
                Class::LocalConfig,
                format!("--owner {o:?} is not an owner name"),
            ));
        }
    };
    Ok(Target { host, owner })
}

/// The installation for `target` that is known without asking GitHub: the configured owner
/// map, then what minted the cached entry; without an owner, the default installation (or
/// the only one configured). `Ok(None)`: discover it.
pub fn known_installation(
    config: &Config,
    target: &Target,
    cached: Option<&Entry>,
) -> Result<Option<u64>> {
    let app = &config.github_app;
    match &target.owner {
        Some(owner) => Ok(app
            .installations
            .get(owner)
            .copied()
            .or_else(|| cached.and_then(|e| e.installation_id))),
        None => match (app.installation_id, app.installations.len()) {
            (Some(id), _) => Ok(Some(id)),
            (None, 1) => Ok(app.installations.values().next().copied()),
            (None, _) => Err(Error::new(
                Class::LocalConfig,
                format!(
                    "no installation for {} without an owner: set MOLECULE_GITHUB_APP_INSTALLATION_ID, or turn on credential.useHttpPath (git-credential-molecule configure --use-http-path) so the repository owner selects one",
                    target.host
                ),
            )),
        },
    }
}

/// Everything a refresh covers: each configured host, in the order `MOLECULE_GIT_HOSTS` gives
/// (the first is the default target, and `status` lists them as configured), followed, for the
/// `github-app` source, by that host's owners from the installation map and from the cache (so
/// tokens git asked for stay warm), sorted and without duplicates.
pub fn refresh_targets(config: &Config, doc: &crate::cache::Document) -> Vec<Target> {
    let mut targets = Vec::new();
    for host in &config.hosts {
        targets.push(Target::host(host));
        if config.token_source != TokenSourceKind::GithubApp {
            continue;
        }
        let cached = doc
            .entries
            .keys()
            .map(|k| Target::from_key(k))
            .filter(|t| t.owner.is_some() && &t.host == host);
        let mapped = config.github_app.installations.keys().map(|o| Target {
            host: host.clone(),
            owner: Some(o.clone()),
        });
        let owners: std::collections::BTreeSet<Target> = mapped.chain(cached).collect();
        targets.extend(owners);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::read_request;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::load(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .config
    }

    fn req(s: &str) -> Request {
        read_request(s.as_bytes()).unwrap()
    }

    #[test]
    fn owner_routes_only_for_the_app_source() {
        let app = config(&[("MOLECULE_TOKEN_SOURCE", "github-app")]);
        let t = target(
            &app,
            &req("protocol=https\nhost=GitHub.com\npath=Acme/App.git\n"),
        )
        .unwrap();
        assert_eq!(t.key(), "github.com/acme");
        assert_eq!(Target::from_key("github.com/acme"), t);
        let t = target(&app, &req("protocol=https\nhost=github.com\n")).unwrap();
        assert_eq!(t.key(), "github.com");
        assert_eq!(
            target(&app, &req("protocol=https\nhost=github.com\npath=../etc\n"))
                .unwrap()
                .owner,
            None
        );
        let platform = config(&[]);
        let t = target(
            &platform,
            &req("protocol=https\nhost=github.com\npath=acme/app.git\n"),
        )
        .unwrap();
        assert_eq!(
            t.key(),
            "github.com",
            "the platform has one token: the path is ignored"
        );
        assert_eq!(
            target(&platform, &req("protocol=http\nhost=github.com\n")),
            None
        );
    }

    #[test]
    fn refresh_covers_hosts_mapped_owners_and_cached_owners() {
        let c = config(&[
            ("MOLECULE_TOKEN_SOURCE", "github-app"),
            ("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=1"),
        ]);
        let mut doc = crate::cache::Document::default();
        let e = Entry::new(
            crate::Secret::new("ghs_x".into()),
            time::OffsetDateTime::now_utc(),
            time::OffsetDateTime::now_utc(),
            "github-app",
        );
        doc.entries.insert("github.com/globex".into(), e.clone());
        doc.entries.insert("elsewhere.test/initech".into(), e);
        let keys: Vec<String> = refresh_targets(&c, &doc).iter().map(Target::key).collect();
        assert_eq!(keys, ["github.com", "github.com/acme", "github.com/globex"]);

        // Hosts keep their configured order; owners follow their host.
        let two = config(&[
            ("MOLECULE_TOKEN_SOURCE", "github-app"),
            ("MOLECULE_GIT_HOSTS", "github.com,ghe.example.com"),
            ("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=1"),
        ]);
        let keys: Vec<String> = refresh_targets(&two, &doc)
            .iter()
            .map(Target::key)
            .collect();
        assert_eq!(
            keys,
            [
                "github.com",
                "github.com/acme",
                "github.com/globex",
                "ghe.example.com",
                "ghe.example.com/acme"
            ]
        );
        let platform = config(&[("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=1")]);
        assert_eq!(refresh_targets(&platform, &doc).len(), 1);
    }

    #[test]
    fn commands_pick_a_configured_host_and_an_app_owner() {
        let c = config(&[("MOLECULE_GIT_HOSTS", "github.com,ghe.example.com")]);
        assert_eq!(pick(&c, None, None).unwrap().key(), "github.com");
        assert_eq!(
            pick(&c, Some("GHE.example.com:443"), None).unwrap().key(),
            "ghe.example.com"
        );
        let e = pick(&c, Some("evil.test"), None).unwrap_err();
        assert!(e.message().contains("not one of MOLECULE_GIT_HOSTS"), "{e}");
        let e = pick(&c, None, Some("acme")).unwrap_err();
        assert!(e.message().contains("github-app"), "{e}");
        let app = config(&[("MOLECULE_TOKEN_SOURCE", "github-app")]);
        assert_eq!(
            pick(&app, None, Some("Acme")).unwrap().key(),
            "github.com/acme"
        );
        assert!(pick(&app, None, Some("../x")).is_err());
    }

    #[test]
    fn installation_lookup_order() {
        let c = config(&[
            ("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11,globex=22"),
            ("MOLECULE_GITHUB_APP_INSTALLATION_ID", "99"),
        ]);
        let owner = |o: &str| Target {
            host: "github.com".into(),
            owner: Some(o.into()),
        };
        assert_eq!(
            known_installation(&c, &owner("acme"), None).unwrap(),
            Some(11)
        );
        assert_eq!(
            known_installation(&c, &owner("initech"), None).unwrap(),
            None,
            "discover"
        );
        let mut cached = Entry::new(
            crate::Secret::new("ghs_x".into()),
            time::OffsetDateTime::now_utc(),
            time::OffsetDateTime::now_utc(),
            "github-app",
        );
        cached.installation_id = Some(33);
        assert_eq!(
            known_installation(&c, &owner("initech"), Some(&cached)).unwrap(),
            Some(33),
            "remembered"
        );
        assert_eq!(
            known_installation(&c, &Target::host("github.com"), None).unwrap(),
            Some(99)
        );
        let only = config(&[("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11")]);
        assert_eq!(
            known_installation(&only, &Target::host("github.com"), None).unwrap(),
            Some(11)
        );
        let two = config(&[("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11,globex=22")]);
        let e = known_installation(&two, &Target::host("github.com"), None).unwrap_err();
        assert!(e.message().contains("useHttpPath"), "{e}");
    }
}
