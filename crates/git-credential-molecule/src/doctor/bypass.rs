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
use molecule_credential::child;
use molecule_credential::config::Config;
use molecule_credential::logging::redact;

use crate::gitconfig::helper_value::{is_reset, shell_quote};
use crate::gitconfig::urlmatch::{Lookup, Url, http_matches_host};
use crate::gitconfig::{Entry, Scope, Target, ere_escape};

use super::{Context, DOCTOR_TIMEOUT, Findings, is_ours};

/// The credential in a URL's userinfo: a password of any kind, or a user name that is a
/// token (`https://ghs_…@github.com/`). A plain user name is none.
fn credential_in<'a>(url: &Url<'a>) -> Option<&'a str> {
    let userinfo = url.userinfo?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    if !password.is_empty() {
        Some(password)
    } else if redact(user) != user {
        Some(user)
    } else {
        None
    }
}

/// The credential a URL sends to one of our hosts over HTTP(S), if it carries one.
fn credential_for<'a>(url: &Url<'a>, config: &Config) -> Option<&'a str> {
    let ours = (url.scheme.eq_ignore_ascii_case("https")
        || url.scheme.eq_ignore_ascii_case("http"))
        && config.serves_host(url.host).is_some();
    credential_in(url).filter(|_| ours)
}

/// The fingerprint of a credential seen in git's configuration.
fn fingerprint(credential: &str) -> String {
    Secret::new(credential.to_owned()).fingerprint()
}

/// The entry's key with any credential in its subsection URL shown as `***`.
fn shown_key(e: &Entry) -> String {
    e.key
        .shown_with(|sub| Url::parse(sub).map_or_else(|| sub.to_owned(), |u| u.redacted()))
}

/// The command that removes `e` (the values of its key matching `value_pattern`, or all),
/// from the file it is in ([`Entry::target`]). A key that itself carries a credential is
/// never printed: a loop finds it by a pattern with the userinfo left out.
fn unset_command(e: &Entry, value_pattern: Option<&str>) -> String {
    let Some(target) = &e.target else {
        return format!(
            "remove {} from the -c options, GIT_CONFIG_PARAMETERS or GIT_CONFIG_COUNT/GIT_CONFIG_KEY_n of whoever runs git",
            shown_key(e)
        );
    };
    let flag = target.shell();
    let pattern = value_pattern
        .map(|p| format!(" {}", shell_quote(p)))
        .unwrap_or_default();
    let key = &e.key;
    match key
        .subsection
        .as_deref()
        .and_then(Url::parse)
        .filter(|u| u.userinfo.is_some())
    {
        None => format!(
            "git config {flag} --unset-all {}{pattern}",
            shell_quote(&key.documented())
        ),
        Some(url) => {
            let key_pattern = format!(
                "^{}\\.{}://[^@/]*@{}{}\\.{}$",
                ere_escape(&key.section),
                ere_escape(url.scheme),
                ere_escape(url.host),
                ere_escape(url.rest),
                ere_escape(&key.name)
            );
            format!(
                "git config {flag} --name-only --get-regexp {} | while IFS= read -r key; do git config {flag} --unset-all \"$key\"{pattern}; done",
                shell_quote(&key_pattern)
            )
        }
    }
}

/// `remote.<name>.url` and `pushurl` of the current repository that carry credentials.
pub(super) fn remotes(cx: &Context<'_>, f: &mut Findings) {
    let mut found = false;
    for e in cx.entries() {
        let Some(name) = e.key.subsection_of("remote", &["url", "pushurl"]) else {
            continue;
        };
        let Some(url) = e.value.as_deref().and_then(Url::parse) else {
            continue;
        };
        let Some(credential) = credential_for(&url, cx.config) else {
            continue;
        };
        found = true;
        let push = e.key.name == "pushurl";
        let clean = shell_quote(&url.without_userinfo()).into_owned();
        let fix = match &e.target {
            Some(Target::Local) => format!(
                "git remote set-url{} {} {clean}",
                if push { " --push" } else { "" },
                shell_quote(name),
            ),
            Some(target) => format!(
                "git config {} {} {clean}",
                target.shell(),
                shell_quote(&e.key.to_string()),
            ),
            None => unset_command(e, None),
        };
        f.problem(
            "remote",
            cx.config.serves_host(url.host).as_deref(),
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
pub(super) fn instead_of(cx: &Context<'_>, f: &mut Findings) {
    let entries = cx.entries();
    let mut seen = BTreeSet::new();
    for e in entries {
        let Some(base) = e.key.subsection_of("url", &["insteadof", "pushinsteadof"]) else {
            continue;
        };
        let Some(url) = Url::parse(base) else {
            continue;
        };
        let Some(credential) = credential_for(&url, cx.config) else {
            continue;
        };
        // One finding per key: its values (the prefixes it rewrites) go with it.
        if !seen.insert((e.origin.clone(), e.key.clone())) {
            continue;
        }
        let rewrites: Vec<String> = entries
            .iter()
            .filter(|o| o.origin == e.origin && o.key == e.key)
            .filter_map(|o| o.value.as_deref())
            .map(|v| Url::parse(v).map_or_else(|| redact(v).into_owned(), |u| u.redacted()))
            .collect();
        f.problem(
            "insteadOf",
            cx.config.serves_host(url.host).as_deref(),
            format!(
                "{} ({}) rewrites {} into a URL carrying credentials ({}): git sends them and never asks git-credential-molecule",
                shown_key(e),
                e.whence(),
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
pub(super) fn extra_headers(cx: &Context<'_>, f: &mut Findings) {
    let mut found = false;
    for e in cx
        .entries()
        .iter()
        .filter(|e| e.key.is("http", "extraheader"))
    {
        let Some((name, credentials)) = e.value.as_deref().and_then(|v| v.split_once(':')) else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            continue;
        }
        // Which of our hosts it is sent to: git matches http.<url> by scheme, host and port
        // (and path and user, which only narrow it to some repositories of that host).
        let hosts: Vec<&str> = cx
            .config
            .hosts
            .iter()
            .map(String::as_str)
            .filter(|h| {
                e.key
                    .subsection
                    .as_deref()
                    .is_none_or(|pattern| http_matches_host(pattern, &Lookup::https(h)))
            })
            .collect();
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
            (hosts.len() == 1).then_some(*first),
            format!(
                "{} ({}) sends `{}: {auth_scheme} <{}>` on every request to {}: git never asks git-credential-molecule there, and once that token dies every request fails",
                shown_key(e),
                e.whence(),
                name.trim(),
                fingerprint(credential),
                hosts.join(", ")
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
pub(super) fn askpass(cx: &Context<'_>, f: &mut Findings) {
    const EFFECT: &str = "git asks that program for a username and password whenever no helper answers (an outage of ours included), and what it answers is usually a token fixed at start";
    let mut found = false;
    if let Some(program) = &cx.config.git_askpass {
        found = true;
        f.problem(
            "askPass",
            None,
            format!("GIT_ASKPASS is exported ({}): {EFFECT}", redact(program)),
            "unset GIT_ASKPASS".into(),
        );
    }
    for e in cx.entries().iter().filter(|e| e.key.is("core", "askpass")) {
        let Some(program) = e.value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        found = true;
        f.problem(
            "askPass",
            None,
            format!(
                "core.askPass ({}) is {}: {EFFECT}",
                e.whence(),
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
pub(super) fn local_overrides<'a>(entries: &'a [Entry], host: &str) -> Vec<&'a Entry> {
    let lookup = Lookup::https(host);
    let matching: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.is_credential("helper", &lookup))
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
        .filter(|e| matches!(e.scope, Scope::Local | Scope::Worktree))
        .filter(|e| !e.value.as_deref().is_some_and(is_ours))
        .collect()
}

/// Reports [`local_overrides`] for each host, one finding per key.
pub(super) fn local_helpers(cx: &Context<'_>, f: &mut Findings) {
    for host in &cx.config.hosts {
        let overrides = local_overrides(cx.entries(), host);
        let mut keys: Vec<&Entry> = Vec::new();
        for e in &overrides {
            if !keys.iter().any(|k| k.origin == e.origin && k.key == e.key) {
                keys.push(e);
            }
        }
        for first in &keys {
            let entries: Vec<&Entry> = overrides
                .iter()
                .copied()
                .filter(|e| e.origin == first.origin && e.key == first.key)
                .collect();
            f.problem(
                "localHelper",
                Some(host),
                override_detail(first, &entries),
                unset_command(first, None),
            );
        }
        if keys.is_empty() {
            f.ok(
                "localHelper",
                Some(host),
                "no credential.helper of this repository resets or follows ours".into(),
            );
        }
    }
}

/// What the repository's `entries` of one key do to ours.
fn override_detail(first: &Entry, entries: &[&Entry]) -> String {
    let (key, whence) = (&first.key, first.whence());
    let resets = entries
        .iter()
        .any(|e| e.value.as_deref().is_none_or(is_reset));
    let others: Vec<String> = entries
        .iter()
        .filter_map(|e| e.value.as_deref().filter(|v| !is_reset(v)))
        .map(|v| format!("`{}`", redact(v)))
        .collect();
    if resets {
        format!(
            "{key} in this repository ({whence}) resets the helper list: git never asks git-credential-molecule here{}",
            if others.is_empty() {
                String::new()
            } else {
                format!(", it asks {} instead", others.join(", "))
            }
        )
    } else {
        format!(
            "{key} in this repository ({whence}) adds {} after git-credential-molecule: if ours fails, it answers with whatever it stored",
            others.join(", ")
        )
    }
}

/// Token variables exported where tools read them instead of asking.
pub(super) fn environment(cx: &Context<'_>, f: &mut Findings) {
    for token in cx.config.exported_tokens() {
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
pub(super) fn gh(cx: &Context<'_>, f: &mut Findings) {
    let Some(doc) = &cx.doc else { return };
    for host in cx
        .config
        .hosts
        .iter()
        .filter(|h| molecule_credential::gh::supports_host(h))
    {
        let Some(entry) = doc.entries.get(host).filter(|e| e.is_usable(cx.now)) else {
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
    let out =
        match molecule_credential::block_on(child::run(cmd, None, DOCTOR_TIMEOUT, "gh auth token"))
            .and_then(|r| r)
        {
            Err(e) if e.class() == molecule_credential::Class::MissingProgram => {
                return Asked::Missing;
            }
            Err(e) => return Asked::Failed(e.to_string()),
            Ok(out) => out,
        };
    if let Some(failed) = out.failed("gh auth token") {
        return Asked::Failed(failed.to_string());
    }
    let held = Secret::new(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if held.is_empty() {
        Asked::Failed("gh auth token printed nothing".into())
    } else {
        Asked::Holds(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitconfig::Listing;

    /// Entries as git would list them in /work/repo.
    fn listing(records: &[(&str, &str, &str, &str)]) -> Vec<Entry> {
        let raw: Vec<u8> = records
            .iter()
            .flat_map(|(scope, origin, key, value)| {
                format!("{scope}\0{origin}\0{key}\n{value}\0").into_bytes()
            })
            .collect();
        Listing::parse(&raw, || "/work/repo".into()).entries
    }

    #[test]
    fn credentials_in_urls() {
        fn cred(url: &str) -> Option<&str> {
            Url::parse(url).and_then(|u| credential_in(&u))
        }
        assert_eq!(
            cred("https://x-access-token:ghs_SECRET@github.com/acme/app.git"),
            Some("ghs_SECRET")
        );
        assert_eq!(cred("https://ghp_SECRET@github.com/"), Some("ghp_SECRET"));
        assert_eq!(
            cred("https://octocat@github.com/acme/app.git"),
            None,
            "a user name alone is no credential"
        );
        assert_eq!(cred("https://octocat:@github.com/"), None);
    }

    #[test]
    fn fixes_never_name_the_credential() {
        let e = listing(&[(
            "global",
            "file:/home/a/.gitconfig",
            "url.https://x-access-token:ghs_SECRET@github.com/.insteadof",
            "https://github.com/",
        )]);
        assert_eq!(
            unset_command(&e[0], None),
            r#"git config --file /home/a/.gitconfig --name-only --get-regexp '^url\.https://[^@/]*@github\.com/\.insteadof$' | while IFS= read -r key; do git config --file /home/a/.gitconfig --unset-all "$key"; done"#
        );
        assert_eq!(shown_key(&e[0]), "url.https://***@github.com/.insteadOf");
        let e = listing(&[
            ("local", "file:.git/config", "core.bare", "false"),
            (
                "local",
                "file:.git/config",
                "http.https://github.com/.extraheader",
                "AUTHORIZATION: basic c2VjcmV0",
            ),
        ]);
        assert_eq!(
            unset_command(&e[1], Some("^AUTHORIZATION:")),
            "git config --local --unset-all http.https://github.com/.extraHeader '^AUTHORIZATION:'"
        );
        let e = listing(&[("command", "command line:", "core.askpass", "/bin/x")]);
        assert!(unset_command(&e[0], None).starts_with("remove core.askPass from the -c options"));
    }

    #[test]
    fn local_helpers_after_ours() {
        let entries = listing(&[
            (
                "global",
                "file:/h/.gitconfig",
                "credential.https://github.com.helper",
                "",
            ),
            (
                "global",
                "file:/h/.gitconfig",
                "credential.https://github.com.helper",
                "/usr/local/bin/git-credential-molecule",
            ),
            ("local", "file:.git/config", "credential.helper", ""),
            ("local", "file:.git/config", "credential.helper", "store"),
            (
                "local",
                "file:.git/config",
                "credential.https://gitlab.com.helper",
                "x",
            ),
        ]);
        let found: Vec<_> = local_overrides(&entries, "github.com")
            .iter()
            .map(|e| e.value.clone().unwrap_or_default())
            .collect();
        assert_eq!(found, ["", "store"]);
        assert!(local_overrides(&entries[..2], "github.com").is_empty());
        // Without ours anywhere there is nothing to override: the helpers check reports it.
        assert!(local_overrides(&entries[2..], "github.com").is_empty());
        let overrides = local_overrides(&entries, "github.com");
        assert_eq!(
            override_detail(overrides[0], &overrides),
            "credential.helper in this repository (local file:.git/config) resets the helper list: git never asks git-credential-molecule here, it asks `store` instead"
        );
    }
}
