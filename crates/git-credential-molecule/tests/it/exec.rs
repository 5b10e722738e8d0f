//! `exec --restart`: the supervisor's timing as pure decisions at fixed instants (fixed clock,
//! fixed dice: 0.5 puts every full-jitter backoff at half its ceiling).

use std::time::Duration;

use git_credential_molecule::exec::restart::{Held, Next, Plan, Verdict, next, verdict};
use molecule_credential::clock::parse_rfc3339;
use molecule_credential::schedule::{BACKOFF_BASE, BACKOFF_CAP, FixedDice, MIN_WAIT, Policy};
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------
// Pure timing.

/// DESIGN.md's defaults: a 300 s margin, the 2 s lead, the daemon's backoff series.
fn plan() -> Plan {
    Plan {
        margin: Duration::from_secs(300),
        lead: Duration::from_secs(2),
        backoff: Policy {
            interval: Duration::from_secs(2700),
            jitter: Duration::from_secs(120),
            initial_delay: Duration::from_secs(60),
            margin: Duration::from_secs(300),
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            min_wait: MIN_WAIT,
        },
    }
}

fn t0() -> OffsetDateTime {
    parse_rfc3339("2026-12-01T12:00:00Z").unwrap()
}

/// `t0` plus `secs` (fractions and negatives allowed).
fn at(secs: f64) -> OffsetDateTime {
    t0() + time::Duration::seconds_f64(secs)
}

fn expires(secs: f64) -> Held {
    Held::Expires(at(secs))
}

fn decide(held: Held, misses: u32, now: f64) -> Next {
    next(&plan(), held, misses, at(now), &mut FixedDice(0.5))
}

#[test]
fn a_fresh_token_is_replaced_two_seconds_before_it_enters_the_margin() {
    // Expires at t0+3600: the margin begins at 3300, the restart at 3298.
    let held = expires(3600.0);
    assert_eq!(decide(held, 0, 0.0), Next::At(at(3298.0)));
    assert_eq!(decide(held, 0, 3297.5), Next::At(at(3298.0)));
    assert_eq!(decide(held, 0, 3298.0), Next::Now);
    // The platform's usual answer: its cached token, 20 minutes left.
    assert_eq!(decide(expires(1200.0), 0, 0.0), Next::At(at(898.0)));
}

#[test]
fn the_child_is_restarted_only_for_a_fresh_token_while_its_own_is_due() {
    let p = plan();
    let held = expires(3600.0);
    let fresh = expires(7198.0);
    // Before its time, not even a fresh token restarts it: never more often than required.
    assert_eq!(verdict(&p, held, fresh, false, at(3297.0)), Verdict::Keep);
    assert_eq!(
        verdict(&p, held, fresh, false, at(3298.0)),
        Verdict::Restart
    );
    // Due, but what the look found is no better.
    let due = at(3298.0);
    assert_eq!(
        verdict(&p, held, held, true, due),
        Verdict::Keep,
        "same token"
    );
    let degraded = expires(3599.0);
    assert_eq!(verdict(&p, held, degraded, false, due), Verdict::Keep);
    assert_eq!(verdict(&p, held, Held::Unknown, false, due), Verdict::Keep);
    // A "fresh" token that is itself due at once would only mean another restart: not fresh.
    assert_eq!(
        verdict(&p, held, expires(3298.0 + 302.0), false, due),
        Verdict::Keep
    );
    assert_eq!(
        verdict(&p, held, expires(3298.0 + 302.5), false, due),
        Verdict::Restart
    );
}

#[test]
fn a_look_that_finds_no_fresh_token_backs_off_on_the_daemons_series() {
    let held = expires(3600.0);
    // Half of 15, 30, 60, 120, 240, 300 s.
    let series: Vec<Next> = (1..=7).map(|n| decide(held, n, 3298.0)).collect();
    let secs = |s: f64| Next::After(Duration::from_secs_f64(s));
    assert_eq!(
        series,
        [
            secs(7.5),
            secs(15.0),
            secs(30.0),
            secs(60.0),
            secs(120.0),
            secs(150.0),
            secs(150.0)
        ]
    );
    // One last look two seconds before the token dies, however long the backoff has grown.
    assert_eq!(decide(held, 6, 3550.0), secs(48.0));
    // Past that point the backoff alone (never under a second): the child's token is dead
    // either way, and only a fresh one can help.
    assert_eq!(decide(held, 6, 3599.0), secs(150.0));
    assert_eq!(decide(held, 6, 4000.0), secs(150.0));
    assert_eq!(
        next(&plan(), held, 1, at(3598.5), &mut FixedDice(0.0)),
        Next::After(MIN_WAIT)
    );
}

#[test]
fn a_degraded_start_is_retried_at_once_on_the_backoff_then_restarted_for_a_fresh_token() {
    let p = plan();
    // The source failed at start and the cache held a token with 4 minutes left: the child
    // gets it (better than nothing), and the look that found it counts as the first miss.
    let held = expires(240.0);
    assert_eq!(
        decide(held, 1, 0.0),
        Next::After(Duration::from_millis(7500))
    );
    // The source is still down: the same token again, then nothing at all.
    assert_eq!(verdict(&p, held, held, true, at(7.5)), Verdict::Keep);
    assert_eq!(
        decide(held, 2, 7.5),
        Next::After(Duration::from_secs(15)),
        "doubling"
    );
    // Back: a fresh token restarts the child at once.
    assert_eq!(
        verdict(&p, held, expires(22.5 + 3600.0), false, at(22.5)),
        Verdict::Restart
    );
}

#[test]
fn the_fallback_is_kept_until_a_real_token_arrives() {
    let p = plan();
    // Expiry unknown: never due by the clock, but the boot-time token may die any moment, so
    // the supervisor keeps looking on the backoff series.
    assert_eq!(
        decide(Held::Unknown, 1, 0.0),
        Next::After(Duration::from_millis(7500))
    );
    assert_eq!(
        decide(Held::Unknown, 0, 0.0),
        Next::After(Duration::from_millis(7500)),
        "a fallback start always counts one miss"
    );
    assert_eq!(
        decide(Held::Unknown, 9, 0.0),
        Next::After(Duration::from_secs(150))
    );
    // Another fallback (or the same), or a degraded token: no restart for those.
    for found in [Held::Unknown, expires(200.0)] {
        assert_eq!(
            verdict(&p, Held::Unknown, found, false, t0()),
            Verdict::Keep
        );
    }
    assert_eq!(
        verdict(&p, Held::Unknown, expires(3600.0), false, t0()),
        Verdict::Restart
    );
}

#[test]
fn a_dying_token_gives_way_to_anything_that_may_outlive_it() {
    let p = plan();
    // Inside the margin and failing to refresh for minutes: not yet dying, so a degraded token
    // that lives longer is still no reason to restart.
    let held = expires(60.0);
    assert_eq!(
        verdict(&p, held, expires(200.0), false, t0()),
        Verdict::Keep
    );
    // Two seconds before it dies (or after): a later degraded token, or the fallback, may
    // still work where the child's token certainly will not.
    for now in [58.0, 61.0] {
        assert_eq!(
            verdict(&p, held, expires(200.0), false, at(now)),
            Verdict::Restart
        );
        assert_eq!(
            verdict(&p, held, Held::Unknown, false, at(now)),
            Verdict::Restart
        );
        // One dying sooner, or already dead, is no better.
        assert_eq!(
            verdict(&p, held, expires(59.0), false, at(now)),
            Verdict::Keep
        );
    }
}

#[test]
fn the_wall_clock_is_read_at_every_wake() {
    let p = plan();
    let held = expires(3600.0);
    // Asleep until 3298 when the clock jumps two hours ahead (a resumed VM): the token is
    // dead by the new reading; the supervisor looks at once and takes any fresh token.
    assert_eq!(decide(held, 0, 600.0 + 7200.0), Next::Now);
    assert_eq!(
        verdict(&p, held, expires(7800.0 + 3600.0), false, at(7800.0)),
        Verdict::Restart
    );
    // Backing off when the clock jumps back an hour: the token is fresh again by the new
    // reading, so the supervisor sleeps until it is due, and would not restart for a fresh
    // token meanwhile.
    assert_eq!(decide(held, 4, 3300.0 - 3600.0), Next::At(at(3298.0)));
    assert_eq!(
        verdict(&p, held, expires(3600.0 + 1000.0), false, at(-300.0)),
        Verdict::Keep
    );
}

/// A day of the real platform: one-hour tokens, each cached by the platform and re-minted
/// only when less than 5 minutes remain. The supervisor's look at 302 s before expiry gets
/// the same token back; the retry 7.5 s later gets a new one. Returns the restart instants.
fn a_day_with_the_platform(plan: &Plan) -> Vec<f64> {
    let mut dice = FixedDice(0.5);
    let mut platform_expiry = 3600.0;
    let mut held = expires(platform_expiry);
    let mut misses = 0;
    let mut now = 0.0;
    let mut restarts = Vec::new();
    while now < 86_400.0 {
        now = match next(plan, held, misses, at(now), &mut dice) {
            Next::At(when) => (when - t0()).as_seconds_f64(),
            Next::Now => now,
            Next::After(wait) => now + wait.as_secs_f64(),
        };
        if platform_expiry - now < 300.0 {
            platform_expiry = now + 3600.0;
        }
        let found = expires(platform_expiry);
        match verdict(plan, held, found, found == held, at(now)) {
            Verdict::Restart => {
                restarts.push(now);
                held = found;
                misses = 0;
            }
            Verdict::Keep => misses += 1,
        }
    }
    restarts
}

#[test]
fn a_day_of_hourly_tokens_costs_one_restart_per_token() {
    let restarts = a_day_with_the_platform(&plan());
    // Each token is used until 5.5 s into its margin (the platform's own re-mint threshold
    // decides that), so a new one every 3305.5 s: 26 in 24 hours, never two for one token.
    assert_eq!(restarts.len(), 26);
    assert_eq!(restarts[0], 3305.5);
    for pair in restarts.windows(2) {
        assert_eq!(pair[1] - pair[0], 3305.5);
    }
}
