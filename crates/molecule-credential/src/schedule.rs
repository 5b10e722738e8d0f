//! When the daemon wakes next: pure functions of the outcome, the clock reading and injected
//! randomness (DESIGN.md, "Failure classes and exit codes"; the daemon issue's schedule).
//!
//! - After a fresh token: `min(interval ± jitter, expires_at − margin − now)`.
//! - After a transient failure, or a token that came back already inside the margin (the
//!   platform re-mints only under 5 minutes): exponential backoff with full jitter,
//!   `uniform(0, ceiling)`, never past the expiry of the token we still hold. The ceiling is
//!   `min(cap, base·2ⁿ⁻¹)`, or, after a failure while the held token is still fresh, that
//!   token's remaining life when longer — so a fleet recovering from an outage spreads its
//!   retries over the time it actually has instead of stampeding — and never more than the
//!   interval (a retry is never later than the next scheduled refresh would be).
//! - After 429: the server's `Retry-After` when given.
//! - After auth or not-configured: the normal interval (retrying sooner cannot help).
//!
//! The loop that sleeps lives in the daemon; nothing here sleeps or reads a clock.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::error::Class;

/// Timing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Normal interval between refreshes.
    pub interval: Duration,
    /// Uniform ± jitter on the interval.
    pub jitter: Duration,
    /// First wait when the cache is already fresh.
    pub initial_delay: Duration,
    /// Tokens this close to expiry are refreshed.
    pub margin: Duration,
    /// First backoff ceiling.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_cap: Duration,
    /// No wait is shorter than this: a floor against busy loops whatever the inputs.
    pub min_wait: Duration,
}

/// First backoff ceiling: the first retry comes within 15 s.
pub const BACKOFF_BASE: Duration = Duration::from_secs(15);
/// Backoff ceilings stop doubling at 5 minutes.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The shortest wait the schedule ever returns.
pub const MIN_WAIT: Duration = Duration::from_secs(1);

impl Policy {
    /// The policy `config` describes.
    pub fn from_config(config: &Config) -> Self {
        Self {
            interval: config.refresh_interval,
            jitter: config.refresh_jitter,
            initial_delay: config.initial_delay,
            margin: config.margin,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            min_wait: MIN_WAIT,
        }
    }
}

/// A source of uniform randomness in `[0, 1)`, injected so tests are exact.
pub trait Dice {
    /// A uniform sample in `[0, 1)`.
    fn unit(&mut self) -> f64;
}

/// Always the same sample: for tests.
#[derive(Clone, Copy, Debug)]
pub struct FixedDice(pub f64);

impl Dice for FixedDice {
    fn unit(&mut self) -> f64 {
        self.0
    }
}

/// The process's random number generator.
#[derive(Debug, Default)]
pub struct RandomDice;

impl Dice for RandomDice {
    fn unit(&mut self) -> f64 {
        rand::random::<f64>()
    }
}

/// What one refresh cycle ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A token with more than the margin left.
    Fresh {
        /// Its expiry.
        expires_at: OffsetDateTime,
    },
    /// A token, but already inside the margin: ask again soon.
    Stale {
        /// Its expiry.
        expires_at: OffsetDateTime,
    },
    /// No token.
    Failed {
        /// Why.
        class: Class,
        /// The server's `Retry-After`, for 429.
        retry_after: Option<Duration>,
        /// Expiry of the still-valid token the cache holds, if any.
        holding: Option<OffsetDateTime>,
    },
}

fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

fn jittered_interval(policy: &Policy, dice: &mut dyn Dice) -> Duration {
    let offset = (dice.unit() * 2.0 - 1.0) * policy.jitter.as_secs_f64();
    Duration::from_secs_f64((policy.interval.as_secs_f64() + offset).max(0.0))
}

/// A scheduled refresh is skipped when another process fetched a fresh token this recently:
/// a minute, or half the interval when that is shorter (with a 3-second interval a fixed minute
/// would skip every refresh through a short outage).
pub fn skip_window(policy: &Policy) -> Duration {
    SKIP_WINDOW.min(policy.interval / 2)
}

/// The most a scheduled refresh is skipped for a recent fetch by another process.
pub const SKIP_WINDOW: Duration = Duration::from_secs(60);

/// The backoff ceiling for the `attempt`-th consecutive failure (1-based) while holding a token
/// that expires at `holding`: the doubling series; while that token is still fresh (outside
/// the margin), its remaining life when that is longer; never above the interval. Once the
/// token is inside the margin the doubling series alone: retry soon.
///
/// Why the whole remaining life: after an outage, a fleet's retries land uniformly over their
/// ceilings. The fleet benchmark (f) puts the post-recovery peak at 5.3× the mean with the
/// 5-minute doubling alone, 4.1× spreading over half the remaining life, 4.0× over the life
/// until the margin, and 2.3× over the whole remaining life — against the 2× that the
/// backlog of a 10-minute outage and 15 minutes of remaining life make the floor. No token
/// expires: every wait is also capped at the held token's expiry, and a token inside the
/// margin is still served (degraded), while each helper refreshes by itself on a miss.
pub fn ceiling(
    policy: &Policy,
    attempt: u32,
    holding: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    let doubled = policy
        .backoff_base
        .saturating_mul(1 << doublings)
        .min(policy.backoff_cap);
    let spread = holding
        .filter(|expiry| now + policy.margin < *expiry)
        .map_or(Duration::ZERO, |expiry| until(expiry, now));
    doubled.max(spread).min(policy.interval)
}

/// The full-jitter backoff for the `attempt`-th consecutive failure (1-based): uniform up to
/// the [`ceiling`].
pub fn backoff(
    policy: &Policy,
    attempt: u32,
    holding: Option<OffsetDateTime>,
    now: OffsetDateTime,
    dice: &mut dyn Dice,
) -> Duration {
    ceiling(policy, attempt, holding, now)
        .mul_f64(dice.unit())
        .max(policy.min_wait)
}

/// The wait before the first refresh. `cached_expiry` is the earliest expiry of the usable
/// (present, not suspect) cached tokens, `None` when any host has none: prime at once when a
/// token is missing, suspect or inside the margin; otherwise wait the initial delay, but not past
/// the point where the token enters the margin.
pub fn initial_wait(
    policy: &Policy,
    cached_expiry: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Duration {
    match cached_expiry {
        Some(expiry) if now + policy.margin < expiry => {
            policy.initial_delay.min(until(expiry - policy.margin, now))
        }
        _ => Duration::ZERO,
    }
}

/// The wait after a cycle. `failures` counts consecutive non-fresh cycles including this one.
pub fn next_wait(
    policy: &Policy,
    outcome: Outcome,
    failures: u32,
    now: OffsetDateTime,
    dice: &mut dyn Dice,
) -> Duration {
    let wait = match outcome {
        Outcome::Fresh { expires_at } => {
            jittered_interval(policy, dice).min(until(expires_at - policy.margin, now))
        }
        // The source itself answered a token inside the margin (the platform re-mints only
        // under 5 minutes): ask again soon, on the doubling series.
        Outcome::Stale { expires_at } => {
            backoff(policy, failures, None, now, dice).min(until(expires_at, now))
        }
        Outcome::Failed {
            class,
            retry_after,
            holding,
        } => match (class, retry_after) {
            (Class::RateLimited, Some(after)) => after,
            // Waiting sooner mends none of these: a bearer, an App or a program is missing.
            (Class::Auth | Class::NotConfigured | Class::MissingProgram, _) => {
                jittered_interval(policy, dice)
            }
            _ => {
                let holding = holding.filter(|expiry| *expiry > now);
                let b = backoff(policy, failures, holding, now, dice);
                match holding {
                    Some(expiry) => b.min(until(expiry, now)),
                    None => b,
                }
            }
        },
    };
    wait.max(policy.min_wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    fn policy() -> Policy {
        Policy::from_config(&Config::load(|_| None).config)
    }

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-11-22T18:00:00Z").unwrap()
    }

    fn mins(m: i64) -> OffsetDateTime {
        now() + time::Duration::minutes(m)
    }

    #[test]
    fn interval_with_jitter_bounds() {
        let fresh = Outcome::Fresh {
            expires_at: mins(600),
        };
        let at = |u| next_wait(&policy(), fresh, 0, now(), &mut FixedDice(u));
        assert_eq!(at(0.0), Duration::from_secs(2580));
        assert_eq!(at(0.5), Duration::from_secs(2700));
        assert_eq!(at(0.75), Duration::from_secs(2760));
    }

    #[test]
    fn expiry_guard_wakes_before_the_margin() {
        // The platform answered its cached token with 20 minutes left: wake in 15.
        let w = next_wait(
            &policy(),
            Outcome::Fresh {
                expires_at: mins(20),
            },
            0,
            now(),
            &mut FixedDice(0.5),
        );
        assert_eq!(w, Duration::from_secs(15 * 60));
    }

    #[test]
    fn backoff_series_is_capped_full_jitter() {
        let p = policy();
        let series: Vec<u64> = (1..=8)
            .map(|n| backoff(&p, n, None, now(), &mut FixedDice(0.5)).as_secs())
            .collect();
        assert_eq!(series, [7, 15, 30, 60, 120, 150, 150, 150]);
        let top: Vec<u64> = (1..=7)
            .map(|n| backoff(&p, n, None, now(), &mut FixedDice(0.999_999)).as_secs())
            .collect();
        assert_eq!(top, [14, 29, 59, 119, 239, 299, 299]);
        assert_eq!(backoff(&p, 1, None, now(), &mut FixedDice(0.0)), MIN_WAIT);
        assert_eq!(
            backoff(&p, u32::MAX, None, now(), &mut FixedDice(0.5)),
            Duration::from_secs(150)
        );
    }

    #[test]
    fn retries_spread_over_the_held_tokens_usable_life() {
        let p = policy();
        // 15 minutes left: the first retry may come up to 15 minutes later, not within 15
        // seconds like every other daemon's.
        let held = Some(mins(15));
        assert_eq!(ceiling(&p, 1, held, now()), Duration::from_secs(15 * 60));
        // The doubling series wins once it is longer.
        assert_eq!(ceiling(&p, 9, Some(mins(2)), now()), BACKOFF_CAP);
        assert_eq!(ceiling(&p, 1, None, now()), BACKOFF_BASE);
        // Never later than the next scheduled refresh would be.
        let short = Policy {
            interval: Duration::from_secs(3),
            ..p
        };
        assert_eq!(ceiling(&short, 1, None, now()), Duration::from_secs(3));
        assert_eq!(ceiling(&short, 9, held, now()), Duration::from_secs(3));
        let failed = Outcome::Failed {
            class: Class::Transient,
            retry_after: None,
            holding: held,
        };
        assert_eq!(
            next_wait(&p, failed, 1, now(), &mut FixedDice(0.5)),
            Duration::from_secs(450)
        );
        // Never past the held token's expiry.
        assert!(
            next_wait(&p, failed, 1, now(), &mut FixedDice(0.999_999))
                < Duration::from_secs(15 * 60)
        );
    }

    #[test]
    fn the_skip_window_is_a_minute_or_half_the_interval() {
        assert_eq!(skip_window(&policy()), Duration::from_secs(60));
        let short = Policy {
            interval: Duration::from_secs(3),
            ..policy()
        };
        assert_eq!(skip_window(&short), Duration::from_millis(1500));
    }

    #[test]
    fn transient_failure_never_waits_past_the_held_token() {
        let failed = |holding| Outcome::Failed {
            class: Class::Transient,
            retry_after: None,
            holding,
        };
        let p = policy();
        assert_eq!(
            next_wait(&p, failed(None), 6, now(), &mut FixedDice(0.5)),
            Duration::from_secs(150)
        );
        let soon = Some(now() + time::Duration::seconds(40));
        assert_eq!(
            next_wait(&p, failed(soon), 6, now(), &mut FixedDice(0.5)),
            Duration::from_secs(40)
        );
        // An already-expired held token does not shorten anything.
        let gone = Some(now() - time::Duration::seconds(40));
        assert_eq!(
            next_wait(&p, failed(gone), 6, now(), &mut FixedDice(0.5)),
            Duration::from_secs(150)
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let o = Outcome::Failed {
            class: Class::RateLimited,
            retry_after: Some(Duration::from_secs(90)),
            holding: Some(mins(2)),
        };
        assert_eq!(
            next_wait(&policy(), o, 1, now(), &mut FixedDice(0.5)),
            Duration::from_secs(90)
        );
        let no_header = Outcome::Failed {
            class: Class::RateLimited,
            retry_after: None,
            holding: None,
        };
        assert_eq!(
            next_wait(&policy(), no_header, 1, now(), &mut FixedDice(0.5)),
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn auth_not_configured_and_a_missing_program_keep_the_interval() {
        for class in [Class::Auth, Class::NotConfigured, Class::MissingProgram] {
            let o = Outcome::Failed {
                class,
                retry_after: None,
                holding: Some(mins(3)),
            };
            assert_eq!(
                next_wait(&policy(), o, 9, now(), &mut FixedDice(0.5)),
                Duration::from_secs(2700)
            );
        }
    }

    #[test]
    fn stale_answer_backs_off_instead_of_spinning() {
        // A token with exactly the margin left would make the guard say "now": back off.
        let o = Outcome::Stale {
            expires_at: mins(5),
        };
        assert_eq!(
            next_wait(&policy(), o, 1, now(), &mut FixedDice(0.5)),
            Duration::from_millis(7500)
        );
        let o = Outcome::Stale {
            expires_at: now() + time::Duration::seconds(3),
        };
        assert_eq!(
            next_wait(&policy(), o, 4, now(), &mut FixedDice(0.5)),
            Duration::from_secs(3)
        );
        let o = Outcome::Stale { expires_at: now() };
        assert_eq!(
            next_wait(&policy(), o, 4, now(), &mut FixedDice(0.5)),
            MIN_WAIT
        );
    }

    #[test]
    fn initial_wait_primes_at_once_unless_fresh() {
        let p = policy();
        assert_eq!(initial_wait(&p, None, now()), Duration::ZERO);
        assert_eq!(initial_wait(&p, Some(mins(4)), now()), Duration::ZERO);
        assert_eq!(
            initial_wait(&p, Some(mins(50)), now()),
            Duration::from_secs(60)
        );
        assert_eq!(
            initial_wait(&p, Some(now() + time::Duration::seconds(330)), now()),
            Duration::from_secs(30)
        );
    }
}
