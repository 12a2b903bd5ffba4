//! Tunables of the request queue (retries, backoff, leases, retention, the clock SQLite stamps
//! times with) and the backoff rule.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::types::chrono::{DateTime, Utc};

use super::error::{Error, Result};

/// How the queue retries, leases and keeps requests. The defaults suit tape: minutes between
/// retries, a lease the dispatcher renews well before it runs out, failures shown for a week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Claims a request gets before a failure is final (at least 1). A claim whose lease expired
    /// (crashed instance) counts as an attempt, so a request that crashes every server that
    /// runs it ends up failed instead of looping.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further attempt.
    pub backoff_base: Duration,
    /// Upper bound of the wait between attempts.
    pub backoff_max: Duration,
    /// How long a claim is valid without renewal. A holder renews it (`renew_lease`) well before
    /// it runs out; once it has, another instance may take the request over.
    pub lease_duration: Duration,
    /// How long done and failed requests are kept before `expire_finished` deletes them.
    pub retention: Duration,
    /// Connections in the pool. SQLite serialises writers anyway; PostgreSQL benefits from a
    /// few per dispatcher worker.
    pub max_connections: u32,
    /// Where SQLite takes the time from (this process's clock by default). PostgreSQL never
    /// uses it: every time there comes from the database's `now()`, so that instances whose
    /// clocks disagree still agree on leases, backoff and retention.
    pub clock: Clock,
}

/// A source of the current time; tests replace the system clock to move time on SQLite.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Two clocks are equal when they are the same clock (one `Clock` and its clones).
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Clock {}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_attempts: 5,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            lease_duration: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_connections: 8,
            clock: Clock::system(),
        }
    }
}

impl QueueOptions {
    /// Reject values the queue cannot work with, naming the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.lease_duration < Duration::from_millis(1) {
            return bad("lease_duration", "must be at least 1 ms");
        }
        if self.backoff_max < self.backoff_base {
            return bad("backoff_max", "must not be smaller than backoff_base");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        // Durations go into the database as milliseconds in an i64.
        for (option, d) in [
            ("backoff_max", self.backoff_max),
            ("lease_duration", self.lease_duration),
            ("retention", self.retention),
        ] {
            if d.as_millis() > i64::MAX as u128 / 2 {
                return bad(option, "is too large");
            }
        }
        Ok(())
    }

    /// Wait before the attempt after `attempts` failed ones: `backoff_base * 2^(attempts-1)`,
    /// capped at `backoff_max`. Deterministic (no jitter): instances do not retry the same
    /// request at once anyway, since only one can claim it.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(32);
        let factor = 1u64 << exponent;
        let base_ms = self.backoff_base.as_millis().min(u64::MAX as u128) as u64;
        let wait = Duration::from_millis(base_ms.saturating_mul(factor));
        wait.min(self.backoff_max)
    }
}

/// A duration as whole milliseconds for SQL parameters (validated to fit).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = QueueOptions {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(45),
            ..QueueOptions::default()
        };
        assert_eq!(o.backoff(1), Duration::from_secs(10));
        assert_eq!(o.backoff(2), Duration::from_secs(20));
        assert_eq!(o.backoff(3), Duration::from_secs(40));
        assert_eq!(o.backoff(4), Duration::from_secs(45));
        assert_eq!(o.backoff(200), Duration::from_secs(45));
    }

    #[test]
    fn validate_names_the_option() {
        let o = QueueOptions {
            max_attempts: 0,
            ..QueueOptions::default()
        };
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
        assert!(QueueOptions::default().validate().is_ok());
    }
}
