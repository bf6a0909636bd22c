//! One issuer's request pace: `requestsPerSecond` spaces requests, and a 429's
//! Retry-After pauses all of them. Shared by every ApiKey using the issuer.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Gate {
    /// The earliest moment the next request may go.
    next: Mutex<Instant>,
    interval: Duration,
}

impl Gate {
    /// `per_second`: `None` for no limit.
    pub fn new(per_second: Option<u32>) -> Gate {
        Gate {
            next: Mutex::new(Instant::now()),
            interval: per_second
                .filter(|r| *r > 0)
                .map_or(Duration::ZERO, |r| Duration::from_secs(1) / r),
        }
    }

    /// Waits for the next request slot.
    pub async fn wait(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + self.interval;
    }

    /// No request goes before `for_` has passed (a 429's Retry-After).
    pub async fn pause(&self, for_: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + for_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_and_a_pause_holds_them_all() {
        let gate = Gate::new(Some(4));
        let start = Instant::now();
        for _ in 0..5 {
            gate.wait().await;
        }
        // Four spaced after the first, a quarter second apart.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        gate.pause(Duration::from_secs(3)).await;
        let paused = Instant::now();
        gate.wait().await;
        assert_eq!(paused.elapsed(), Duration::from_secs(3));
        let unlimited = Gate::new(None);
        let start = Instant::now();
        for _ in 0..100 {
            unlimited.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
