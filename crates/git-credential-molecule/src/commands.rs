//! Commands for people and scripts: `refresh`, `token` (`exec` is in [`crate::exec`]).

use std::io::Write;
use std::sync::Arc;

use molecule_credential::broker::{Broker, Refreshed, Want};
use molecule_credential::clock::{Clock, SystemClock, format_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::output::{self, Format, Handout};
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
                let how = done
                    .status
                    .map_or_else(|| "read".to_owned(), |s| format!("http {s}"));
                writeln!(
                    out,
                    "{key}: ok ({how}), token expires {} (in {}){note}",
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
    out.write_all(render(args.format, &token)?.expose().as_bytes())
        .map_err(|e| write_error(&e))?;
    Ok(0)
}

/// The text `token --format` prints for `token` at this moment (the one renderer, shared with
/// the daemon's sinks).
pub fn render(format: Format, token: &Token) -> Result<molecule_credential::Secret<String>, Error> {
    let Token {
        token: secret,
        expiry: _,
        expires_at,
        source,
    } = token;
    output::render(
        format,
        &Handout {
            token: secret,
            expires_at: *expires_at,
            source,
        },
        SystemClock.now(),
    )
}
