//! A request pace: a token bucket of `per_second` with room for `burst` at once, and a
//! 429's Retry-After pausing all requests. Each issuer has one, shared by every ApiKey
//! using it; the Kubernetes client has one (`--kube-qps`, `--kube-burst`).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Gate {
    state: Mutex<State>,
    /// Seconds between tokens (`None`: no limit).
    every: Option<f64>,
    burst: f64,
}

struct State {
    tokens: f64,
    updated: Instant,
    /// No request before this (a 429's Retry-After).
    paused_until: Instant,
}

impl Gate {
    /// `per_second`: `None` for no limit; `burst`: how many may go at once (at least 1).
    pub fn new(per_second: Option<u32>, burst: Option<u32>) -> Gate {
        let burst = f64::from(burst.unwrap_or(1).max(1));
        let now = Instant::now();
        Gate {
            state: Mutex::new(State {
                tokens: burst,
                updated: now,
                paused_until: now,
            }),
            every: per_second.filter(|r| *r > 0).map(|r| 1.0 / f64::from(r)),
            burst,
        }
    }

    /// Waits for the next request slot.
    pub async fn wait(&self) {
        let mut s = self.state.lock().await;
        tokio::time::sleep_until(s.paused_until).await;
        if let Err(wait) = self.take(&mut s) {
            tokio::time::sleep(wait).await;
            // The slot that came free is this request's.
            s.tokens = 0.0;
            s.updated = Instant::now();
        }
    }

    /// Takes a slot if one is free now, or says how long until one is: for a server that
    /// refuses a request over its limit instead of holding it.
    pub async fn try_take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().await;
        self.take(&mut s)
    }

    fn take(&self, s: &mut State) -> Result<(), Duration> {
        let Some(every) = self.every else {
            return Ok(());
        };
        let now = Instant::now();
        let refilled = now.duration_since(s.updated).as_secs_f64() / every;
        s.tokens = (s.tokens + refilled).min(self.burst);
        s.updated = now;
        if s.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - s.tokens) * every));
        }
        s.tokens -= 1.0;
        Ok(())
    }

    /// No request goes before `for_` has passed (a 429's Retry-After).
    pub async fn pause(&self, for_: Duration) {
        let mut s = self.state.lock().await;
        s.paused_until = s.paused_until.max(Instant::now() + for_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_after_a_burst_and_a_pause_holds_them_all() {
        let gate = Gate::new(Some(4), None);
        let start = Instant::now();
        for _ in 0..5 {
            gate.wait().await;
        }
        // One at once, then four a quarter second apart.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        gate.pause(Duration::from_secs(3)).await;
        let paused = Instant::now();
        gate.wait().await;
        assert!(paused.elapsed() >= Duration::from_secs(3));

        let bursty = Gate::new(Some(2), Some(3));
        let start = Instant::now();
        for _ in 0..3 {
            bursty.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "three at once");
        bursty.wait().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(500),
            "then two a second"
        );

        let refusing = Gate::new(Some(2), None);
        assert_eq!(refusing.try_take().await, Ok(()));
        assert_eq!(
            refusing.try_take().await,
            Err(Duration::from_millis(500)),
            "the next slot is half a second away"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(refusing.try_take().await, Ok(()));

        let unlimited = Gate::new(None, None);
        let start = Instant::now();
        for _ in 0..100 {
            unlimited.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
