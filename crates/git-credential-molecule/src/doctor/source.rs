//! The token source, and the clock against its server: one check per source, each silent
//! when another source is configured.
//!
//! - `platform`: the bearer file can be read; the platform's `Date` is within 60 s of ours.
//! - Each file someone else provisions (the bearer, the App's key, the token file) is
//!   reported when others may read it: it is used anyway, and the finding gives the fix.
//! - `github-app`: the App's key loads; for each host GitHub accepts the App's JWT
//!   (`GET /app`), and its `Date` is within 60 s of ours.
//! - `file`: the token file is set, readable and parseable, and holds a token with more than
//!   the margin left (or a bare token, whose expiry is unknown).

use molecule_credential::clock::{Clock, SystemClock};
use molecule_credential::config::{Config, TokenSourceKind};
use molecule_credential::file_source::FileSource;
use molecule_credential::github_app::AppClient;
use molecule_credential::http::Tls;
use molecule_credential::platform::read_bearer;
use molecule_credential::secret::Exposure;
use molecule_credential::{Class, Error};

use std::path::Path;

use super::{Context, DOCTOR_TIMEOUT, Findings};
use crate::commands::human_secs;

/// What fixes a clock that is off.
const SYNC_THE_CLOCK: &str = "sync the clock (chronyd, systemd-timesyncd or ntpd)";

/// The platform's bearer, and the clock against the platform.
pub(super) fn platform(cx: &Context<'_>, f: &mut Findings) {
    let config = cx.config;
    if config.token_source != TokenSourceKind::Platform {
        return;
    }
    let bearer = config.configs_dir.join(".auth_token");
    provisioned(&bearer, "the platform bearer", f);
    match read_bearer(&config.configs_dir) {
        Ok(_) => f.ok(
            "source",
            None,
            format!(
                "platform {} with a bearer from {}",
                config.platform_url,
                bearer.display()
            ),
        ),
        Err(e) => f.problem(
            "source",
            None,
            e.to_string(),
            format!(
                "write the platform bearer to {} (one line)",
                bearer.display()
            ),
        ),
    }
    let url = &config.platform_url;
    match skew_against(url) {
        Ok(skew) if skew.whole_seconds().abs() > 60 => f.problem(
            "clock",
            None,
            format!(
                "this clock is {}s {} {url}'s: expiry times and JWTs are judged wrongly",
                skew.whole_seconds().abs(),
                if skew.is_positive() {
                    "behind"
                } else {
                    "ahead of"
                }
            ),
            SYNC_THE_CLOCK.into(),
        ),
        Ok(skew) => f.ok(
            "clock",
            None,
            format!("within {}s of {url}", skew.whole_seconds().abs()),
        ),
        Err(e) => f.problem(
            "clock",
            None,
            format!("cannot reach {url} to compare clocks: {e}"),
            "check the URL and the network path to it".into(),
        ),
    }
}

/// The file source: set, readable, parseable, and holding a token with time left.
pub(super) fn file(cx: &Context<'_>, f: &mut Findings) {
    let config = cx.config;
    if config.token_source != TokenSourceKind::File {
        return;
    }
    let source = match FileSource::new(config.token_source_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            return f.problem(
                "source",
                None,
                e.to_string(),
                "export MOLECULE_TOKEN_SOURCE_FILE=<the file another system keeps the token in>"
                    .into(),
            );
        }
    };
    provisioned(source.path(), "the token source file", f);
    let path = source.path().display().to_string();
    match source.parse(cx.now) {
        Ok(minted) if !minted.expiry_known => f.ok(
            "source",
            None,
            format!(
                "token file {path}: a bare token; its expiry is unknown, so it is cached for 10 minutes at a time"
            ),
        ),
        Ok(minted) => {
            let left = (minted.expires_at - cx.now).whole_seconds();
            let detail = format!("token file {path}: the token expires in {}", human_secs(left));
            if left <= i64::try_from(config.margin.as_secs()).unwrap_or(i64::MAX) {
                f.problem(
                    "source",
                    None,
                    format!(
                        "{detail}, inside the {}s margin: whatever writes it has not rotated it",
                        config.margin.as_secs()
                    ),
                    format!(
                        "check what keeps {path} fresh: it must rotate the token well before it expires"
                    ),
                );
            } else {
                f.ok("source", None, detail);
            }
        }
        Err(e) => f.problem(
            "source",
            None,
            e.to_string(),
            format!(
                "provision {path} with {{\"token\":…,\"expires_at\":…}} or a bare token (docs/consumers.md)"
            ),
        ),
    }
}

/// The server's clock minus ours, from the `Date` of a GET to `url` (any status will do).
fn skew_against(url: &str) -> Result<time::Duration, Error> {
    let timeout = DOCTOR_TIMEOUT;
    let client = molecule_credential::http::client(timeout, Tls::for_url(url))?;
    let response = molecule_credential::block_on(molecule_credential::http::send(
        client.get(url),
        url,
        timeout,
    ))??;
    let date = response
        .date
        .ok_or_else(|| Error::new(Class::Protocol, "the answer had no Date header"))?;
    Ok(date - SystemClock.now())
}

/// The App's key, whether GitHub accepts its JWT for each host, and the clock against it.
pub(super) fn github_app(cx: &Context<'_>, f: &mut Findings) {
    let config = cx.config;
    if config.token_source != TokenSourceKind::GithubApp {
        return;
    }
    let app = &config.github_app;
    let Some(issuer) = app.issuer() else {
        f.problem(
            "source",
            None,
            "MOLECULE_TOKEN_SOURCE=github-app needs MOLECULE_GITHUB_APP_ID or MOLECULE_GITHUB_APP_CLIENT_ID, and MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE or MOLECULE_GITHUB_APP_SIGNER".into(),
            "export MOLECULE_GITHUB_APP_CLIENT_ID=<the App's client ID> and MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE=<its PEM key> (or MOLECULE_GITHUB_APP_SIGNER=<a command that signs>)".into(),
        );
        return;
    };
    if let Some(key) = app.private_key_file.as_deref() {
        provisioned(key, "the GitHub App's private key", f);
    }
    // The library's own client, as the helper and the daemon use it (it applies the rules:
    // a key file or a signer, not both), with a doctor's shorter patience.
    let patient = Config {
        http_timeout: config.http_timeout.min(DOCTOR_TIMEOUT),
        ..config.clone()
    };
    let signs_with = match (app.private_key_file.as_deref(), &app.signer) {
        (Some(path), _) => format!("key {}", path.display()),
        (None, Some(_)) => "a signer command".to_owned(),
        (None, None) => "no key".to_owned(),
    };
    match AppClient::new(&patient) {
        Ok(client) => {
            f.ok("source", None, format!("GitHub App {issuer}, {signs_with}"));
            for host in &config.hosts {
                check_app(&client, &app.api_base(host), host, f);
            }
        }
        Err(e) => f.problem("source", None, e.to_string(), "point MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE at the App's PEM key (Settings → Developer settings → GitHub Apps → Private keys), or MOLECULE_GITHUB_APP_SIGNER at a command that signs with it; not both".into()),
    }
}

/// A secret file someone else provisions (the platform bearer, the App's key, the file
/// source's token): used when others may read it, and reported here with its fix.
fn provisioned(path: &Path, what: &str, f: &mut Findings) {
    if let Ok(Some(e)) = Exposure::of_file(path) {
        f.problem("source", None, e.warning(what), e.fix.clone());
    }
}

/// Asks GitHub whether it accepts the App's JWT (`GET /app`), and compares clocks.
fn check_app(client: &AppClient, api: &str, host: &str, f: &mut Findings) {
    let result =
        molecule_credential::block_on(client.check(api, || SystemClock.now())).and_then(|r| r);
    match result {
        Ok((200, date)) => {
            f.ok("source", Some(host), format!("{api} accepts the App's JWT"));
            if let Some(d) = date {
                let skew = d - SystemClock.now();
                if skew.whole_seconds().abs() > 60 {
                    f.problem("clock", Some(host), format!("this clock is {}s off {api}'s: JWTs are re-timed on the server's clock, but expiries are judged on ours", skew.whole_seconds().abs()), SYNC_THE_CLOCK.into());
                } else {
                    f.ok("clock", Some(host), format!("within {}s of {api}", skew.whole_seconds().abs()));
                }
            }
        }
        Ok((status, _)) => f.problem(
            "source",
            Some(host),
            format!("{api} refused the App's JWT (http {status})"),
            "check MOLECULE_GITHUB_APP_ID against the key, and MOLECULE_GITHUB_API_URL(S) for this host".into(),
        ),
        Err(e) => f.problem("source", Some(host), format!("cannot reach {api}: {e}"), "check MOLECULE_GITHUB_API_URL(S) and the network path".into()),
    }
}
