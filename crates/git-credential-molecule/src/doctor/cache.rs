//! The cache directory, the tokens it holds, and the daemon's last outcome
//! ([`molecule_credential::status::assess`], the same judgement `gh-token-refresh status`
//! makes).

use molecule_credential::status::{DaemonStatus, assess};

use super::{Context, Findings};

/// The directory itself: refused (insecure, not a directory), or not created yet. Silent when
/// it is fine: the token and daemon checks then say what it holds.
pub(super) fn directory(cx: &Context<'_>, f: &mut Findings) {
    let dir = cx.config.cache_dir.display();
    match &cx.cache {
        Err(e) => f.problem(
            "cache",
            None,
            e.to_string(),
            format!("chmod 700 {dir}; chmod 600 {dir}/*  (or remove it: it is recreated)"),
        ),
        Ok(None) => f.ok(
            "cache",
            None,
            format!("{dir} does not exist yet: the first git operation creates it"),
        ),
        Ok(Some(_)) => {}
    }
}

/// Each host's (and owner's) cached token: its source, length and time to expiry.
pub(super) fn tokens(cx: &Context<'_>, f: &mut Findings) {
    let (Ok(Some(_)), Some(doc)) = (&cx.cache, &cx.doc) else {
        return;
    };
    for target in molecule_credential::route::refresh_targets(cx.config, doc) {
        let key = target.key();
        match doc.entries.get(&key) {
            None => f.ok("token", Some(&key), "none cached yet".into()),
            Some(e) if e.suspect => f.ok(
                "token",
                Some(&key),
                "a server rejected the cached token: the next git operation fetches another".into(),
            ),
            Some(e) => {
                let left = (e.expires_at - cx.now).whole_seconds();
                f.ok(
                    "token",
                    Some(&key),
                    format!(
                        "{} token, {} bytes, expires in {}",
                        e.source,
                        e.token.len(),
                        crate::commands::human_secs(left)
                    ),
                );
            }
        }
    }
}

/// The daemon's status file, judged against the cache.
pub(super) fn daemon(cx: &Context<'_>, f: &mut Findings) {
    let (Ok(Some(cache)), Some(doc)) = (&cx.cache, &cx.doc) else {
        return;
    };
    match DaemonStatus::read(cache) {
        Ok(status) => {
            let problems = assess(cx.config, status.as_ref(), doc, cx.now);
            if problems.is_empty() {
                f.ok(
                    "daemon",
                    None,
                    "gh-token-refresh is running and its last refresh succeeded".into(),
                );
            }
            for p in problems {
                f.problem("daemon", None, p, "start gh-token-refresh (scripts/entrypoint.sh does; or systemctl --user enable --now gh-token-refresh), and see its log".into());
            }
        }
        Err(e) => f.problem(
            "daemon",
            None,
            e.to_string(),
            format!(
                "remove {}/daemon.status.json; the daemon rewrites it",
                cx.config.cache_dir.display()
            ),
        ),
    }
}
