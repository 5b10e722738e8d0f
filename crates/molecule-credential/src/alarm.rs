//! Waking at a wall-clock time, across suspend, snapshot-restore and clock changes
//! (DESIGN.md: "The schedule follows the wall clock, not only a monotonic timer").
//!
//! Tokens die on the wall clock, but a monotonic timer does not move while a machine is
//! suspended or a VM is paused: a daemon that slept on one alone would sleep out a timer set
//! before the pause while its token was already dead. [`RealtimeAlarm`] is a timerfd on
//! `CLOCK_REALTIME`, armed with `TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`:
//!
//! - it fires when the wall clock reaches the deadline, however long the machine slept
//!   (`CLOCK_BOOTTIME` would cover a suspend too, but not a VM or sandbox restored from a
//!   snapshot, whose clock is stepped forward on resume);
//! - the kernel cancels it whenever the clock is set discontinuously — an NTP step, a guest
//!   agent after a restore, `timerfd_resume` after a system suspend — and the caller, woken,
//!   reads the wall clock again and decides;
//! - idle, it costs nothing: one fd in the runtime's epoll set, no periodic check.
//!
//! The decision stays with the caller: an alarm only says "look at the clock now".

use std::future::Future;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use time::OffsetDateTime;
use tokio::io::unix::AsyncFd;

/// Something that resolves at a wall-clock time, or earlier when the wall clock is changed.
/// Injected (like [`crate::clock::Clock`]) so schedules can be tested on simulated time.
pub trait Alarm {
    /// Resolves when the wall clock reaches `at`, or as soon as the wall clock is changed
    /// discontinuously. Callers read the clock again after it resolves.
    fn wait_until(&mut self, at: OffsetDateTime) -> impl Future<Output = ()>;
}

/// The system's wall clock, through a timerfd (see the module docs). Where timerfds are not
/// available (a restrictive seccomp profile), it sleeps on the monotonic clock instead and
/// says so once.
#[derive(Debug)]
pub struct RealtimeAlarm {
    timer: Option<AsyncFd<OwnedFd>>,
}

impl RealtimeAlarm {
    /// A new alarm. Needs a Tokio runtime with I/O enabled.
    pub fn new() -> Self {
        let timer = timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(register);
        match timer {
            Ok(fd) => Self { timer: Some(fd) },
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no timerfd on CLOCK_REALTIME; after a suspend or a snapshot restore the \
                     schedule catches up only at its next monotonic wake"
                );
                Self { timer: None }
            }
        }
    }

    async fn wait_on(timer: &AsyncFd<OwnedFd>, at: OffsetDateTime) -> std::io::Result<()> {
        let nanos = at.unix_timestamp_nanos().max(1);
        let value = Timespec {
            tv_sec: i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from(nanos % 1_000_000_000).unwrap_or(0),
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(
            timer.get_ref(),
            TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
            &spec,
        )?;
        loop {
            let mut ready = timer.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(timer.get_ref(), &mut expirations) {
                // Fired: the wall clock reached `at`.
                Ok(_) => return Ok(()),
                // Cancelled: the wall clock was set. The caller looks again.
                Err(rustix::io::Errno::CANCELED) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Hands a kernel descriptor the caller owns (a timerfd here, the daemon's inotify watch) to
/// the runtime's reactor: the one place that vouches for such a descriptor.
#[expect(
    unsafe_code,
    reason = "tokio's AsyncFd::register asks the caller to vouch for the fd"
)]
pub fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that nothing else closes, and the AsyncFd
    // owns it for its whole life, so it refers to the same file description throughout.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

impl Default for RealtimeAlarm {
    fn default() -> Self {
        Self::new()
    }
}

impl Alarm for RealtimeAlarm {
    async fn wait_until(&mut self, at: OffsetDateTime) {
        if let Some(timer) = &self.timer {
            match Self::wait_on(timer, at).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the wall-clock timer failed; using the monotonic clock");
                    self.timer = None;
                }
            }
        }
        let left = Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
        tokio::time::sleep(left).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn fires_at_a_wall_clock_time() {
        runtime().block_on(async {
            let mut alarm = RealtimeAlarm::new();
            assert!(alarm.timer.is_some(), "timerfds work here");
            let start = std::time::Instant::now();
            alarm
                .wait_until(OffsetDateTime::now_utc() + Duration::from_millis(200))
                .await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(190), "{took:?}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        });
    }

    #[test]
    fn a_past_deadline_fires_at_once() {
        runtime().block_on(async {
            let mut alarm = RealtimeAlarm::new();
            let start = std::time::Instant::now();
            alarm
                .wait_until(OffsetDateTime::now_utc() - Duration::from_secs(60))
                .await;
            assert!(start.elapsed() < Duration::from_millis(100));
        });
    }

    #[test]
    fn re_arming_replaces_the_deadline() {
        runtime().block_on(async {
            let mut alarm = RealtimeAlarm::new();
            // A wait abandoned (a signal won the select) leaves nothing behind.
            let far = OffsetDateTime::now_utc() + Duration::from_secs(3600);
            let _ = tokio::time::timeout(Duration::from_millis(20), alarm.wait_until(far)).await;
            let start = std::time::Instant::now();
            alarm
                .wait_until(OffsetDateTime::now_utc() + Duration::from_millis(50))
                .await;
            assert!(start.elapsed() < Duration::from_secs(1));
        });
    }
}
