//! What makes git or gh send a credential other than the one this helper serves. Each finding
//! names the exact command that removes it, and shows no credential: a fingerprint at most,
//! and URLs with their userinfo replaced by `***`.
//!
//! - A remote URL of the current repository with credentials in it: git sends those and never
//!   asks a helper.
//! - `url.<base>.insteadOf`/`pushInsteadOf` whose base carries credentials: it rewrites clean
//!   URLs into such a URL.
//! - `http.extraHeader`/`http.<url>.extraHeader` with `Authorization:` for a configured host:
//!   git sends that header on every request, whatever the helper answers.
//! - `GIT_ASKPASS` or `core.askPass`: git asks that program whenever no helper answers, and what
//!   it answers is usually a token fixed at start.
//! - A repository-local `credential.helper` after ours: it resets ours, or answers after it.
//! - Token variables exported for tools that read them instead of asking
//!   ([`Config::exported_tokens`]).
//! - gh's stored token for a host, when it is not the cache's current token.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use molecule_credential::Secret;
use molecule_credential::cache::Document;
use molecule_credential::child;
use molecule_credential::config::Config;
use molecule_credential::logging::redact;
use time::OffsetDateTime;

use crate::configure::shell_quote;

use super::{ConfigEntry, DOCTOR_TIMEOUT, Findings, is_ours, pattern_matches, split_key};

/// Runs every bypass check; each says when it found nothing.
pub(super) fn check(
    config: &Config,
    listing: &[ConfigEntry],
    doc: Option<&Document>,
    now: OffsetDateTime,
    f: &mut Findings,
) {
    remotes(config, listing, f);
    instead_of(config, listing, f);
    extra_headers(config, listing, f);
    askpass(config, listing, f);
    for host in &config.hosts {
        local_helpers(listing, host, f);
    }
    environment(config, f);
    gh(config, doc, now, f);
}

/// A URL split where git splits it: `scheme://[userinfo@]host[:port]rest`.
struct Url<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    rest: &'a str,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, after) = url.split_once("://")?;
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        Some(Self {
            scheme,
            userinfo,
            host,
            rest,
        })
    }

    /// The credential in the userinfo: a password of any kind, or a user name that is a
    /// token (`https://ghs_…@github.com/`). A plain user name is none.
    fn credential(&self) -> Option<&'a str> {
        let userinfo = self.userinfo?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !password.is_empty() {
            Some(password)
        } else if redact(user) != user {
            Some(user)
        } else {
            None
        }
    }

    /// Whether a request to this URL goes to one of our hosts over HTTP(S).
    fn is_for(&self, config: &Config) -> bool {
        (self.scheme.eq_ignore_ascii_case("https") || self.scheme.eq_ignore_ascii_case("http"))
            && config.serves_host(self.host).is_some()
    }

    /// The URL with its userinfo shown as `***`.
    fn redacted(&self) -> String {
        let hidden = if self.userinfo.is_some() { "***@" } else { "" };
        format!("{}://{hidden}{}{}", self.scheme, self.host, self.rest)
    }

    /// The URL without its userinfo.
    fn clean(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.rest)
    }
}

/// The fingerprint of a credential seen in git's configuration.
fn fingerprint(credential: &str) -> String {
    Secret::new(credential.to_owned()).fingerprint()
}

/// A config key split as git does: `url.<sub>.insteadof` → (`url`, `<sub>`, `insteadof`).
fn split_config_key(key: &str) -> (&str, Option<&str>, &str) {
    let (section, rest) = key.split_once('.').unwrap_or((key, ""));
    match rest.rsplit_once('.') {
        Some((sub, var)) => (section, Some(sub), var),
        None => (section, None, rest),
    }
}

/// The key with any credential in its subsection URL shown as `***`.
fn shown_key(key: &str) -> String {
    let (section, sub, var) = split_config_key(key);
    match sub {
        Some(sub) => {
            let sub = Url::parse(sub).map_or_else(|| sub.to_owned(), |u| u.redacted());
            format!("{section}.{sub}.{}", documented(var))
        }
        None => format!("{section}.{}", documented(var)),
    }
}

/// A variable's name as git's documentation spells it (git lists keys lower-cased).
fn documented(var: &str) -> &str {
    match var {
        "insteadof" => "insteadOf",
        "pushinsteadof" => "pushInsteadOf",
        "extraheader" => "extraHeader",
        "askpass" => "askPass",
        other => other,
    }
}

/// `s` escaped for a POSIX extended regular expression (git config's patterns).
fn ere_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How `git config` addresses the file `e` came from: `--local` for the repository's own
/// config, else the file itself (an included file is not what `--global` edits). `None` for
/// entries from the command line or the environment, which no file holds.
fn file_flag(e: &ConfigEntry) -> Option<String> {
    let path = e.origin.strip_prefix("file:")?;
    Some(match e.scope.as_str() {
        "local" if path == ".git/config" || path.ends_with("/.git/config") => "--local".into(),
        "worktree" if path.ends_with("config.worktree") => "--worktree".into(),
        _ => format!("--file {}", shell_quote(path)),
    })
}

/// The command that removes `e` (the values of its key matching `value_pattern`, or all). A
/// key that itself carries a credential is never printed: a loop finds it by a pattern with
/// the userinfo left out.
fn unset_command(e: &ConfigEntry, value_pattern: Option<&str>) -> String {
    let Some(flag) = file_flag(e) else {
        return format!(
            "remove {} from the -c options, GIT_CONFIG_PARAMETERS or GIT_CONFIG_COUNT/GIT_CONFIG_KEY_n of whoever runs git",
            shown_key(&e.key)
        );
    };
    let pattern = value_pattern
        .map(|p| format!(" {}", shell_quote(p)))
        .unwrap_or_default();
    let (section, sub, var) = split_config_key(&e.key);
    match sub.and_then(Url::parse).filter(|u| u.userinfo.is_some()) {
        None => format!(
            "git config {flag} --unset-all {}{pattern}",
            shell_quote(&format!(
                "{section}.{}{}",
                sub.map(|s| format!("{s}.")).unwrap_or_default(),
                documented(var)
            ))
        ),
        Some(url) => {
            let key_pattern = format!(
                "^{}\\.{}://[^@/]*@{}{}\\.{}$",
                ere_escape(section),
                ere_escape(url.scheme),
                ere_escape(url.host),
                ere_escape(url.rest),
                ere_escape(var)
            );
            format!(
                "git config {flag} --name-only --get-regexp {} | while IFS= read -r key; do git config {flag} --unset-all \"$key\"{pattern}; done",
                shell_quote(&key_pattern)
            )
        }
    }
}

/// `remote.<name>.url` and `pushurl` of the current repository that carry credentials.
fn remotes(config: &Config, listing: &[ConfigEntry], f: &mut Findings) {
    let mut found = false;
    for e in listing {
        let (section, Some(name), var) = split_config_key(&e.key) else {
            continue;
        };
        if section != "remote" || !matches!(var, "url" | "pushurl") {
            continue;
        }
        let Some(url) = e.value.as_deref().and_then(Url::parse) else {
            continue;
        };
        let Some(credential) = url.credential().filter(|_| url.is_for(config)) else {
            continue;
        };
        found = true;
        let push = var == "pushurl";
        let fix = match file_flag(e) {
            Some(flag) if flag == "--local" => format!(
                "git remote set-url{} {} {}",
                if push { " --push" } else { "" },
                shell_quote(name),
                shell_quote(&url.clean())
            ),
            Some(flag) => format!(
                "git config {flag} {} {}",
                shell_quote(&format!("remote.{name}.{var}")),
                shell_quote(&url.clean())
            ),
            None => unset_command(e, None),
        };
        f.problem(
            "remote",
            config.serves_host(url.host).as_deref(),
            format!(
                "remote {name}'s {} {} carries credentials ({}): git sends them and never asks git-credential-molecule",
                if push { "push URL" } else { "URL" },
                url.redacted(),
                fingerprint(credential)
            ),
            fix,
        );
    }
    if !found {
        f.ok(
            "remote",
            None,
            "no remote URL here carries credentials for a configured host".into(),
        );
    }
}

/// `url.<base>.insteadOf` and `pushInsteadOf` whose base carries credentials.
fn instead_of(config: &Config, listing: &[ConfigEntry], f: &mut Findings) {
    let mut seen = BTreeSet::new();
    for e in listing {
        let (section, Some(base), var) = split_config_key(&e.key) else {
            continue;
        };
        if section != "url" || !matches!(var, "insteadof" | "pushinsteadof") {
            continue;
        }
        let Some(url) = Url::parse(base) else {
            continue;
        };
        let Some(credential) = url.credential().filter(|_| url.is_for(config)) else {
            continue;
        };
        // One finding per key: its values (the prefixes it rewrites) go with it.
        if !seen.insert((e.origin.clone(), e.key.clone())) {
            continue;
        }
        let rewrites: Vec<String> = listing
            .iter()
            .filter(|o| o.origin == e.origin && o.key == e.key)
            .filter_map(|o| o.value.as_deref())
            .map(|v| Url::parse(v).map_or_else(|| redact(v).into_owned(), |u| u.redacted()))
            .collect();
        f.problem(
            "insteadOf",
            config.serves_host(url.host).as_deref(),
            format!(
                "{} ({} {}) rewrites {} into a URL carrying credentials ({}): git sends them and never asks git-credential-molecule",
                shown_key(&e.key),
                e.scope,
                e.origin,
                rewrites.join(", "),
                fingerprint(credential)
            ),
            unset_command(e, None),
        );
    }
    if seen.is_empty() {
        f.ok(
            "insteadOf",
            None,
            "no url.*.insteadOf rewrites to a URL carrying credentials".into(),
        );
    }
}

/// `http.extraHeader` and `http.<url>.extraHeader` holding `Authorization:` for a configured
/// host.
fn extra_headers(config: &Config, listing: &[ConfigEntry], f: &mut Findings) {
    let mut found = false;
    for e in listing {
        let (section, sub, var) = split_config_key(&e.key);
        if section != "http" || var != "extraheader" {
            continue;
        }
        let Some((name, credentials)) = e.value.as_deref().and_then(|v| v.split_once(':')) else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            continue;
        }
        // Which of our hosts it is sent to: git matches http.<url> by scheme, host and port
        // (and path and user, which only narrow it to some repositories of that host).
        let hosts: Vec<&String> = match sub {
            None => config.hosts.iter().collect(),
            Some(pattern) => {
                let authority = Url::parse(pattern).map_or_else(
                    || pattern.to_owned(),
                    |u| format!("{}://{}", u.scheme, u.host),
                );
                config
                    .hosts
                    .iter()
                    .filter(|h| pattern_matches(&authority, h))
                    .collect()
            }
        };
        let Some(first) = hosts.first() else {
            continue;
        };
        found = true;
        // `basic <base64>` or `bearer <token>`: the credential is what follows the scheme.
        let credentials = credentials.trim();
        let (auth_scheme, credential) = credentials
            .split_once(char::is_whitespace)
            .map_or(("", credentials), |(s, c)| (s, c.trim()));
        f.problem(
            "extraHeader",
            (hosts.len() == 1).then_some(first.as_str()),
            format!(
                "{} ({} {}) sends `{}: {auth_scheme} <{}>` on every request to {}: git never asks git-credential-molecule there, and once that token dies every request fails",
                shown_key(&e.key),
                e.scope,
                e.origin,
                name.trim(),
                fingerprint(credential),
                hosts
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            unset_command(e, Some(&format!("^{}:", ere_escape(name)))),
        );
    }
    if !found {
        f.ok(
            "extraHeader",
            None,
            "no http.*.extraHeader sends an Authorization header to a configured host".into(),
        );
    }
}

/// `GIT_ASKPASS` and `core.askPass`.
fn askpass(config: &Config, listing: &[ConfigEntry], f: &mut Findings) {
    const EFFECT: &str = "git asks that program for a username and password whenever no helper answers (an outage of ours included), and what it answers is usually a token fixed at start";
    let mut found = false;
    if let Some(program) = &config.git_askpass {
        found = true;
        f.problem(
            "askPass",
            None,
            format!("GIT_ASKPASS is exported ({}): {EFFECT}", redact(program)),
            "unset GIT_ASKPASS".into(),
        );
    }
    for e in listing.iter().filter(|e| e.key == "core.askpass") {
        let Some(program) = e.value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        found = true;
        f.problem(
            "askPass",
            None,
            format!(
                "core.askPass ({} {}) is {}: {EFFECT}",
                e.scope,
                e.origin,
                redact(program)
            ),
            unset_command(e, None),
        );
    }
    if !found {
        f.ok(
            "askPass",
            None,
            "neither GIT_ASKPASS nor core.askPass is set".into(),
        );
    }
}

/// The repository's own `credential.helper` entries for `host` that come after our last
/// entry: an empty one resets ours, any other is asked after ours (or instead of it).
pub(super) fn local_overrides<'a>(listing: &'a [ConfigEntry], host: &str) -> Vec<&'a ConfigEntry> {
    let matching: Vec<&ConfigEntry> = listing
        .iter()
        .filter(|e| {
            split_key(&e.key)
                .is_some_and(|(pattern, var)| var == "helper" && pattern_matches(pattern, host))
        })
        .collect();
    let Some(last_ours) = matching
        .iter()
        .rposition(|e| e.value.as_deref().is_some_and(is_ours))
    else {
        return Vec::new();
    };
    matching[last_ours + 1..]
        .iter()
        .copied()
        .filter(|e| matches!(e.scope.as_str(), "local" | "worktree"))
        .filter(|e| !e.value.as_deref().is_some_and(is_ours))
        .collect()
}

/// Reports [`local_overrides`] for `host`, one finding per key.
fn local_helpers(listing: &[ConfigEntry], host: &str, f: &mut Findings) {
    let overrides = local_overrides(listing, host);
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for e in &overrides {
        if !keys.iter().any(|k| k.1 == e.origin && k.2 == e.key) {
            keys.push((e.scope.as_str(), e.origin.as_str(), e.key.as_str()));
        }
    }
    for (scope, origin, key) in &keys {
        let entries: Vec<&&ConfigEntry> = overrides
            .iter()
            .filter(|e| e.origin == *origin && e.key == *key)
            .collect();
        let resets = entries
            .iter()
            .any(|e| e.value.as_deref().is_none_or(str::is_empty));
        let others: Vec<String> = entries
            .iter()
            .filter_map(|e| e.value.as_deref().filter(|v| !v.is_empty()))
            .map(|v| format!("`{}`", redact(v)))
            .collect();
        let detail = if resets {
            format!(
                "{key} in this repository ({scope} {origin}) resets the helper list: git never asks git-credential-molecule here{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(", it asks {} instead", others.join(", "))
                }
            )
        } else {
            format!(
                "{key} in this repository ({scope} {origin}) adds {} after git-credential-molecule: if ours fails, it answers with whatever it stored",
                others.join(", ")
            )
        };
        let fix = entries
            .first()
            .map(|e| unset_command(e, None))
            .unwrap_or_default();
        f.problem("localHelper", Some(host), detail, fix);
    }
    if keys.is_empty() {
        f.ok(
            "localHelper",
            Some(host),
            "no credential.helper of this repository resets or follows ours".into(),
        );
    }
}

/// Token variables exported where tools read them instead of asking.
fn environment(config: &Config, f: &mut Findings) {
    for token in config.exported_tokens() {
        f.problem(
            "environment",
            None,
            format!(
                "{} is exported: {}{}",
                token.name,
                token.effect,
                if token.fallback {
                    " (scripts/entrypoint.sh saves it as the fallback, then unsets it)"
                } else {
                    ""
                }
            ),
            format!("unset {}", token.name),
        );
    }
}

/// gh's stored token for each host gh supports, against the cache's current usable token.
fn gh(config: &Config, doc: Option<&Document>, now: OffsetDateTime, f: &mut Findings) {
    let Some(doc) = doc else { return };
    for host in config
        .hosts
        .iter()
        .filter(|h| molecule_credential::gh::supports_host(h))
    {
        let Some(entry) = doc.entries.get(host).filter(|e| e.is_usable(now)) else {
            continue;
        };
        let login = format!(
            "{} token --host {host} | gh auth login --hostname {host} --git-protocol https --with-token",
            crate::NAME
        );
        match ask_gh(host) {
            // No gh, nothing it could send.
            Asked::Missing => return,
            Asked::Failed(why) => f.advice(
                "gh",
                Some(host),
                format!("gh holds no token for this host ({why}): gh commands fail until gh-token-refresh logs it in"),
                login,
            ),
            Asked::Holds(held) if entry.token == held => f.ok(
                "gh",
                Some(host),
                format!("gh holds the cache's current token ({})", held.fingerprint()),
            ),
            Asked::Holds(held) => f.problem(
                "gh",
                Some(host),
                format!(
                    "gh holds {}, not the cache's current token {}: gh sends a token that dies first, or already has",
                    held.fingerprint(),
                    entry.token.fingerprint()
                ),
                login,
            ),
        }
    }
}

/// What `gh auth token` said.
enum Asked {
    Missing,
    Failed(String),
    Holds(Secret<String>),
}

fn ask_gh(host: &str) -> Asked {
    // gh answers from its stored login only with the token variables removed, as the daemon
    // runs it.
    let cmd =
        molecule_credential::gh::command(OsStr::new("gh"), &["auth", "token", "--hostname", host]);
    match molecule_credential::block_on(child::run(cmd, None, DOCTOR_TIMEOUT, "gh auth token"))
        .and_then(|r| r)
    {
        Err(e) if e.class() == molecule_credential::Class::MissingProgram => Asked::Missing,
        Err(e) => Asked::Failed(e.to_string()),
        Ok(out) if !out.status.success() => Asked::Failed(format!(
            "gh auth token exited {}: {}",
            out.status.code().unwrap_or(-1),
            out.stderr_excerpt()
        )),
        Ok(out) => {
            let held = Secret::new(String::from_utf8_lossy(&out.stdout).trim().to_owned());
            if held.is_empty() {
                Asked::Failed("gh auth token printed nothing".into())
            } else {
                Asked::Holds(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: &str, origin: &str, key: &str, value: &str) -> ConfigEntry {
        ConfigEntry {
            scope: scope.into(),
            origin: origin.into(),
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn urls_with_credentials() {
        let u = Url::parse("https://x-access-token:ghs_SECRET@github.com/acme/app.git").unwrap();
        assert_eq!(u.credential(), Some("ghs_SECRET"));
        assert_eq!(u.redacted(), "https://***@github.com/acme/app.git");
        assert_eq!(u.clean(), "https://github.com/acme/app.git");
        let u = Url::parse("https://ghp_SECRET@github.com/").unwrap();
        assert_eq!(u.credential(), Some("ghp_SECRET"));
        let u = Url::parse("https://octocat@github.com/acme/app.git").unwrap();
        assert_eq!(u.credential(), None, "a user name alone is no credential");
        let u = Url::parse("https://octocat:@github.com/").unwrap();
        assert_eq!(u.credential(), None);
        assert_eq!(
            Url::parse("git@github.com:acme/app.git").map(|u| u.host),
            None
        );
    }

    #[test]
    fn fixes_never_name_the_credential() {
        let e = entry(
            "global",
            "file:/home/a/.gitconfig",
            "url.https://x-access-token:ghs_SECRET@github.com/.insteadof",
            "https://github.com/",
        );
        assert_eq!(
            unset_command(&e, None),
            r#"git config --file /home/a/.gitconfig --name-only --get-regexp '^url\.https://[^@/]*@github\.com/\.insteadof$' | while IFS= read -r key; do git config --file /home/a/.gitconfig --unset-all "$key"; done"#
        );
        assert_eq!(shown_key(&e.key), "url.https://***@github.com/.insteadOf");
        let e = entry(
            "local",
            "file:.git/config",
            "http.https://github.com/.extraheader",
            "AUTHORIZATION: basic c2VjcmV0",
        );
        assert_eq!(
            unset_command(&e, Some("^AUTHORIZATION:")),
            "git config --local --unset-all http.https://github.com/.extraHeader '^AUTHORIZATION:'"
        );
        let e = entry("command", "command line:", "core.askpass", "/bin/x");
        assert!(unset_command(&e, None).starts_with("remove core.askPass from the -c options"));
    }

    #[test]
    fn local_helpers_after_ours() {
        let listing = vec![
            entry(
                "global",
                "file:/h/.gitconfig",
                "credential.https://github.com.helper",
                "",
            ),
            entry(
                "global",
                "file:/h/.gitconfig",
                "credential.https://github.com.helper",
                "/usr/local/bin/git-credential-molecule",
            ),
            entry("local", "file:.git/config", "credential.helper", ""),
            entry("local", "file:.git/config", "credential.helper", "store"),
            entry(
                "local",
                "file:.git/config",
                "credential.https://gitlab.com.helper",
                "x",
            ),
        ];
        let found: Vec<_> = local_overrides(&listing, "github.com")
            .iter()
            .map(|e| e.value.clone().unwrap_or_default())
            .collect();
        assert_eq!(found, ["", "store"]);
        assert!(local_overrides(&listing[..2], "github.com").is_empty());
        // Without ours anywhere there is nothing to override: the helpers check reports it.
        assert!(local_overrides(&listing[2..], "github.com").is_empty());
    }
}
