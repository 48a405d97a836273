//! Per-partner request quotas (governor, keyed by partner id) and per-partner connection caps.
//!
//! One partner flooding the gateway must not slow the others: each partner has its own bucket.
//! Quotas are decided from the verified partner id only, never from anything the client sends.

use crate::identity::PartnerInfo;
use crate::refusal::{ProblemCode, Refusal};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

type Bucket = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware,
>;

pub struct RateLimits {
    default_rate: u32,
    default_burst: u32,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    connections: Mutex<HashMap<String, usize>>,
    max_connections: usize,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(rate_per_second: u32, burst: u32, max_connections: usize) -> RateLimits {
        RateLimits {
            default_rate: rate_per_second.max(1),
            default_burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            max_connections,
            clock: DefaultClock::default(),
        }
    }

    fn bucket(&self, info: &PartnerInfo) -> Arc<Bucket> {
        let mut map = self.buckets.lock().expect("rate limit map");
        map.entry(info.partner.id.clone())
            .or_insert_with(|| {
                let rate =
                    NonZeroU32::new(info.rate_per_second.unwrap_or(self.default_rate).max(1))
                        .expect("non-zero");
                let burst = NonZeroU32::new(info.burst.unwrap_or(self.default_burst).max(1))
                    .expect("non-zero");
                Arc::new(RateLimiter::direct(
                    Quota::per_second(rate).allow_burst(burst),
                ))
            })
            .clone()
    }

    /// Takes one request from the partner's quota or says when to come back.
    pub fn check(&self, info: &PartnerInfo) -> Result<(), Refusal> {
        match self.bucket(info).check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Refusal::new(
                    ProblemCode::RateLimited,
                    "this partner's request quota is used up; retry later",
                )
                .with_retry_after(secs.max(1)))
            }
        }
    }

    /// Registers an open connection for a partner; `None` when its cap is reached.
    pub fn open_connection(self: &Arc<Self>, partner: &str) -> Option<ConnectionGuard> {
        let mut map = self.connections.lock().expect("connection map");
        let n = map.entry(partner.to_owned()).or_insert(0);
        if *n >= self.max_connections {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            limits: self.clone(),
            partner: partner.to_owned(),
        })
    }
}

/// Releases a partner's connection slot when the connection ends.
pub struct ConnectionGuard {
    limits: Arc<RateLimits>,
    partner: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limits.connections.lock() {
            if let Some(n) = map.get_mut(&self.partner) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Partner, Role};

    fn info(id: &str, rate: Option<u32>, burst: Option<u32>) -> PartnerInfo {
        PartnerInfo {
            partner: Partner {
                id: id.into(),
                name: id.into(),
                role: Role::SchoolPo,
                oin: "00000001800000000001".into(),
                organisation: None,
            },
            sees_all: false,
            rate_per_second: rate,
            burst,
            jeugdhulp: false,
            responsible: Default::default(),
            push: None,
        }
    }

    #[test]
    fn each_partner_has_its_own_bucket() {
        let rl = RateLimits::new(1, 3, 10);
        let a = info("a", None, None);
        let b = info("b", None, None);
        for _ in 0..3 {
            rl.check(&a).unwrap();
        }
        let p = rl.check(&a).unwrap_err();
        assert_eq!(p.code, "rate-limited");
        assert_eq!(p.status(), 429);
        assert!(p.retry_after.unwrap() >= 1);
        rl.check(&b).unwrap();
    }

    #[test]
    fn per_partner_overrides_apply() {
        let rl = RateLimits::new(1, 1, 10);
        let big = info("big", Some(1), Some(5));
        for _ in 0..5 {
            rl.check(&big).unwrap();
        }
        assert!(rl.check(&big).is_err());
    }

    #[test]
    fn connection_cap_is_per_partner_and_released() {
        let rl = Arc::new(RateLimits::new(1, 1, 2));
        let g1 = rl.open_connection("a").unwrap();
        let _g2 = rl.open_connection("a").unwrap();
        assert!(rl.open_connection("a").is_none());
        assert!(rl.open_connection("b").is_some());
        drop(g1);
        assert!(rl.open_connection("a").is_some());
    }
}
