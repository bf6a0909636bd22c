//! The controller's notion of now. In production the system clock; tests move it forward
//! (`advance`) to run month-long rotation cycles in milliseconds — every ApiKey is
//! reconciled at the new time, so nothing waits on real timers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

pub struct Clock {
    offset_ms: AtomicI64,
    ticks: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
            ticks: watch::channel(0).0,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("offset_ms", &self.offset_ms.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        let offset = jiff::SignedDuration::from_millis(self.offset_ms.load(Ordering::Relaxed));
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves time forward and wakes every ApiKey.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        self.ticks.send_modify(|n| *n += 1);
    }

    /// One item per `advance` (what the controller reconciles everything on).
    pub fn ticks(&self) -> impl Stream<Item = ()> + Send + 'static {
        WatchStream::from_changes(self.ticks.subscribe()).map(|_| ())
    }
}

/// A timestamp as status records it (whole seconds).
pub fn ts(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

pub fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// `t + d`, saturating.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `t` (at least 50 ms: a requeue never spins).
pub fn until(t: Timestamp, now: Timestamp) -> Duration {
    let secs = (t.as_millisecond() - now.as_millisecond()).max(0) as u64;
    Duration::from_millis(secs).max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advancing_moves_now_and_ticks() {
        let clock = Clock::default();
        let mut ticks = Box::pin(clock.ticks());
        let before = clock.now();
        clock.advance(Duration::from_secs(30 * 86400));
        let moved = clock.now().as_second() - before.as_second();
        assert!((30 * 86400..30 * 86400 + 5).contains(&moved), "{moved}");
        assert_eq!(ticks.next().await, Some(()));
    }
}
