//! What a token looks like to a tool that does not ask git: the formats of `token --format`
//! and of the daemon's sinks (DESIGN.md, "Tokens for tools that do not ask git" and "Token
//! files for readers that poll"). One renderer, so a sink always holds exactly what `token`
//! would print at that moment.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::config::vars;
use crate::error::{Class, Error, Result};
use crate::secret::Secret;

/// How a token is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// The token alone
    #[default]
    Raw,
    /// {"token": …, "expires_at": RFC 3339 or null, "expires_in": seconds or null, "source": …}
    Json,
    /// {"Authorization": "Bearer …"}, for HTTP header hooks
    Header,
    /// GH_TOKEN=… and GITHUB_TOKEN=… lines
    Env,
}

impl Format {
    /// Every format, in the order the contract lists them.
    pub const ALL: [Format; 4] = [Format::Raw, Format::Json, Format::Header, Format::Env];

    /// The format's name, as flags and `MOLECULE_TOKEN_SINKS` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Header => "header",
            Format::Env => "env",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

/// A token about to be handed to a tool: the token, when it dies (`None` for the fallback,
/// whose expiry is unknown) and the source it came from (`platform`, `github-app`, `file` or
/// `fallback`).
#[derive(Clone, Copy, Debug)]
pub struct Handout<'a> {
    /// The token.
    pub token: &'a Secret<String>,
    /// When it dies, if known.
    pub expires_at: Option<OffsetDateTime>,
    /// The cache's source name, or `fallback`.
    pub source: &'a str,
}

/// The text `format` prints for `handout` at `now`, newline-terminated. It holds the token, so
/// it is a [`Secret`] too. `expires_in` is counted at `now`, in whole seconds (never negative):
/// proxies that want a TTL must not have to parse a date.
pub fn render(
    format: Format,
    handout: &Handout<'_>,
    now: OffsetDateTime,
) -> Result<Secret<String>> {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        token: &'a str,
        #[serde(with = "crate::clock::rfc3339::option")]
        expires_at: Option<OffsetDateTime>,
        expires_in: Option<i64>,
        source: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Header {
        #[serde(rename = "Authorization")]
        authorization: String,
    }
    let Handout {
        token,
        expires_at,
        source,
    } = *handout;
    let value = token.expose();
    let mut text = match format {
        Format::Raw => value.clone(),
        Format::Json => serde_json::to_string(&Json {
            token: value,
            expires_at,
            expires_in: expires_at.map(|at| (at - now).whole_seconds().max(0)),
            source,
        })
        .expect("a struct of strings and numbers serialises"),
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
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    fn at(s: &str) -> OffsetDateTime {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn every_format_prints_exact_text() {
        let token = Secret::new("ghs_abc.DEF-1_x".to_owned());
        let handout = Handout {
            token: &token,
            expires_at: Some(at("2026-12-06T21:00:00Z")),
            source: "platform",
        };
        let now = at("2026-12-06T20:10:00.750Z");
        let text = |f| render(f, &handout, now).unwrap().expose().clone();
        assert_eq!(text(Format::Raw), "ghs_abc.DEF-1_x\n");
        assert_eq!(
            text(Format::Json),
            "{\"token\":\"ghs_abc.DEF-1_x\",\"expires_at\":\"2026-12-06T21:00:00Z\",\"expires_in\":2999,\"source\":\"platform\"}\n"
        );
        assert_eq!(
            text(Format::Header),
            "{\"Authorization\":\"Bearer ghs_abc.DEF-1_x\"}\n"
        );
        assert_eq!(
            text(Format::Env),
            "GH_TOKEN=ghs_abc.DEF-1_x\nGITHUB_TOKEN=ghs_abc.DEF-1_x\n"
        );
    }

    #[test]
    fn unknown_expiry_is_null_and_a_past_one_is_zero() {
        let token = Secret::new("ghs_x".to_owned());
        let now = at("2026-12-06T20:00:00Z");
        let fallback = Handout {
            token: &token,
            expires_at: None,
            source: "fallback",
        };
        assert_eq!(
            render(Format::Json, &fallback, now).unwrap().expose(),
            "{\"token\":\"ghs_x\",\"expires_at\":null,\"expires_in\":null,\"source\":\"fallback\"}\n"
        );
        let late = Handout {
            expires_at: Some(at("2026-12-06T19:59:59Z")),
            ..fallback
        };
        assert!(
            render(Format::Json, &late, now)
                .unwrap()
                .expose()
                .contains("\"expires_in\":0,")
        );
    }

    #[test]
    fn env_refuses_shell_characters_and_says_nothing_of_the_token() {
        let token = Secret::new("ghs_a'b".to_owned());
        let e = render(
            Format::Env,
            &Handout {
                token: &token,
                expires_at: None,
                source: "platform",
            },
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(e.class(), Class::Protocol);
        assert!(!e.to_string().contains("ghs_"));
    }

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert!("yaml".parse::<Format>().is_err());
    }
}
