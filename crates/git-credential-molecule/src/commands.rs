//! Commands for people and scripts: `refresh`, `token` (`exec` is in [`crate::exec`]).

use std::io::Write;
use std::sync::Arc;

use molecule_credential::broker::{Broker, Refreshed, Want};
use molecule_credential::clock::{Clock, SystemClock, format_rfc3339};
use molecule_credential::config::{Config, vars};
use molecule_credential::route::{self, Target, refresh_targets};
use molecule_credential::source::Source;
use molecule_credential::store::CacheDir;
use molecule_credential::{Class, Error};

use crate::helper::{Token, obtain};
use crate::{report_error, write_error};

/// `--host` and `--owner`: which token a command is about.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// Host to get a token for; default: the first of MOLECULE_GIT_HOSTS
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Repository owner whose installation mints the token (github-app source)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

impl TokenArgs {
    /// The target these flags name.
    pub fn target(&self, config: &Config) -> Result<Target, Error> {
        route::pick(config, self.host.as_deref(), self.owner.as_deref())
    }
}

/// How `token` prints the token (DESIGN.md, "Tokens for tools that do not ask git").
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The token alone
    #[default]
    Raw,
    /// {"token": …, "expires_at": RFC 3339 or null, "source": …}
    Json,
    /// {"Authorization": "Bearer …"}, for HTTP header hooks
    Header,
    /// GH_TOKEN=… and GITHUB_TOKEN=… lines
    Env,
}

/// `token` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenCommand {
    /// Which token
    #[command(flatten)]
    pub which: TokenArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    pub format: Format,
    /// Print the token even when stdout is a terminal (where anyone looking can read it)
    #[arg(long)]
    pub reveal: bool,
}

/// Human form of a duration in seconds: `54m12s`.
pub fn human_secs(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3600 => format!("{sign}{}m{:02}s", s / 60, s % 60),
        _ => format!("{sign}{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `refresh`: mint now for every host (and, with the `github-app` source, every known owner),
/// whatever the cache holds. Exits with the class of the first failed fetch: a fallback token
/// does not make this succeed.
pub fn refresh(config: &Config, out: &mut dyn Write) -> Result<u8, Error> {
    let cache = CacheDir::open(&config.cache_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = Source::new(config)?;
    let doc = cache.read()?;
    let broker = Broker::new(Arc::new(config.clone()), cache, clock.clone());
    let mut code = 0;
    for target in refresh_targets(config, &doc) {
        let key = target.key();
        let mint =
            |cached: Option<&_>| source.mint_blocking(config, &target, cached, || clock.now());
        match broker.refresh(&key, Want::New, mint) {
            Ok(Refreshed::Minted(done)) => {
                let entry = &done.entry;
                let left = (entry.expires_at - clock.now()).whole_seconds();
                let note = match (done.written, done.expiry_known) {
                    (Ok(false), _) => "; a token with a later expiry was already cached",
                    (_, false) => "; no expiry given, cached for 10 minutes",
                    _ => "",
                };
                writeln!(
                    out,
                    "{key}: ok (http {}), token expires {} (in {}){note}",
                    done.status,
                    format_rfc3339(entry.expires_at),
                    human_secs(left)
                )
                .map_err(|e| write_error(&e))?;
            }
            Ok(Refreshed::AlreadyFresh(_)) => {}
            Err(e) => {
                if code == 0 {
                    code = e.class().exit_code();
                }
                report_error(&Error::new(e.class(), format!("{key}: {e}")).with_source(e));
            }
        }
    }
    Ok(code)
}

/// `token`: print a valid token for scripts and hooks (whole source order; exit 69 only when
/// every source failed). A terminal gets a refusal instead, unless `--reveal`: a token on a
/// screen ends up in scrollback, screenshots and shared sessions.
pub fn token(
    config: &Config,
    args: &TokenCommand,
    out: &mut dyn Write,
    out_is_terminal: bool,
) -> Result<u8, Error> {
    if out_is_terminal && !args.reveal {
        return Err(Error::new(
            Class::Usage,
            "refusing to print a token to a terminal; pipe or redirect it, or pass --reveal",
        ));
    }
    let token = obtain(config, &args.which.target(config)?)?;
    out.write_all(render(args.format, &token)?.as_bytes())
        .map_err(|e| write_error(&e))?;
    Ok(0)
}

/// The text `token --format` prints for `token`, newline-terminated.
pub fn render(format: Format, token: &Token) -> Result<String, Error> {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        token: &'a str,
        #[serde(with = "molecule_credential::clock::rfc3339::option")]
        expires_at: Option<time::OffsetDateTime>,
        source: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Header {
        #[serde(rename = "Authorization")]
        authorization: String,
    }
    let Token {
        token: secret,
        expiry: _,
        expires_at,
        source,
    } = token;
    let value = secret.expose();
    let mut text = match format {
        Format::Raw => value.clone(),
        Format::Json => serde_json::to_string(&Json {
            token: value,
            expires_at: *expires_at,
            source,
        })
        .expect("a string-only struct serialises"),
        Format::Header => serde_json::to_string(&Header {
            authorization: format!("Bearer {value}"),
        })
        .expect("a string-only struct serialises"),
        Format::Env => {
            // Environment files (docker --env-file, systemd EnvironmentFile=, `export $(…)`)
            // take the value as written: one with quotes or shell characters would be read
            // differently by each. GitHub's tokens never have them.
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(Error::new(
                    Class::Protocol,
                    "the token has characters that are not safe in an environment file; use --format raw or json",
                ));
            }
            format!("{}={value}\n{}={value}", vars::GH_TOKEN, vars::GITHUB_TOKEN)
        }
    };
    text.push('\n');
    Ok(text)
}
