//! Anomaly signals: a grant that suddenly reads far more, or far more broadly, than it used to.
//!
//! # Design
//!
//! A rate limit caps the worst case; it does not notice an app that has read one vital-sign
//! page a day for months and now walks every category it was granted in a minute. The
//! [`AnomalyDetector`] keeps, per grant, an exponentially weighted baseline of how many requests
//! and how many distinct data categories a window (one minute by default) usually holds, and
//! raises an [`AnomalySignal`] when the current window jumps far above it. Thresholds have
//! absolute floors so that a quiet grant reading a handful of resources is never flagged.
//!
//! A signal is information for the host (an audit security event, a notice to the patient, a
//! review queue); the detector never blocks a request by itself. Each kind of signal fires at
//! most once per grant and window.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::ids::{CategoryId, GrantId};

/// Tuning of the [`AnomalyDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyConfig {
    /// Length of one observation window.
    pub window: Duration,
    /// Weight of the newest window in the baseline (0 < alpha ≤ 1).
    pub alpha: f64,
    /// Windows of history a grant needs before it can be flagged.
    pub warmup_windows: u32,
    /// A window is a rate spike when it holds more than `rate_factor` × the baseline …
    pub rate_factor: f64,
    /// … and more than this many requests.
    pub min_requests: u32,
    /// A window is a breadth spike when it touches more than `breadth_factor` × the baseline
    /// number of distinct categories …
    pub breadth_factor: f64,
    /// … and more than this many distinct categories.
    pub min_categories: u32,
    /// Grants not seen for this long are forgotten (their baseline restarts).
    pub idle_expiry: Duration,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            window: Duration::minutes(1),
            alpha: 0.1,
            warmup_windows: 5,
            rate_factor: 10.0,
            min_requests: 100,
            breadth_factor: 3.0,
            min_categories: 5,
            idle_expiry: Duration::days(30),
        }
    }
}

/// What kind of jump was seen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// Far more requests in this window than the grant's baseline.
    RateSpike {
        /// Requests seen in the current window so far.
        observed: u32,
        /// The baseline requests per window.
        baseline: f64,
    },
    /// Far more distinct categories in this window than the grant's baseline.
    BreadthSpike {
        /// Distinct categories read in the current window so far.
        observed: u32,
        /// The baseline distinct categories per window.
        baseline: f64,
    },
}

/// A grant whose activity jumped: the "fire hose instead of one sip".
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySignal {
    /// The grant concerned.
    pub grant: GrantId,
    /// What jumped.
    pub kind: AnomalyKind,
    /// Start of the window in which it happened.
    pub window_start: OffsetDateTime,
}

/// Receives anomaly signals (to audit them, alert, or notify the patient).
pub trait AnomalyHook: Send + Sync {
    /// Called once per signal.
    fn on_anomaly(&self, signal: &AnomalySignal);
}

#[derive(Debug, Clone)]
struct GrantActivity {
    window_start: OffsetDateTime,
    requests: u32,
    categories: BTreeSet<CategoryId>,
    baseline_requests: f64,
    baseline_categories: f64,
    windows_seen: u32,
    rate_signalled: bool,
    breadth_signalled: bool,
    last_seen: OffsetDateTime,
}

impl GrantActivity {
    fn new(now: OffsetDateTime) -> Self {
        Self {
            window_start: now,
            requests: 0,
            categories: BTreeSet::new(),
            baseline_requests: 0.0,
            baseline_categories: 0.0,
            windows_seen: 0,
            rate_signalled: false,
            breadth_signalled: false,
            last_seen: now,
        }
    }

    /// Folds finished windows (including empty ones) into the baseline.
    fn roll(&mut self, config: &AnomalyConfig, now: OffsetDateTime) {
        if now < self.window_start + config.window {
            return;
        }
        let mut requests = f64::from(self.requests);
        let mut categories = self.categories.len() as f64;
        let elapsed = ((now - self.window_start) / config.window).floor();
        // Empty windows after the first pull the baseline down; 1000 of them is already "none".
        let windows = (elapsed as u32).clamp(1, 1000);
        for _ in 0..windows {
            if self.windows_seen == 0 {
                self.baseline_requests = requests;
                self.baseline_categories = categories;
            } else {
                self.baseline_requests += config.alpha * (requests - self.baseline_requests);
                self.baseline_categories += config.alpha * (categories - self.baseline_categories);
            }
            self.windows_seen = self.windows_seen.saturating_add(1);
            requests = 0.0;
            categories = 0.0;
        }
        self.window_start += config.window * elapsed;
        self.requests = 0;
        self.categories.clear();
        self.rate_signalled = false;
        self.breadth_signalled = false;
    }
}

/// Watches per-grant activity and raises [`AnomalySignal`]s.
#[derive(Debug)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    grants: Mutex<HashMap<GrantId, GrantActivity>>,
}

impl Default for AnomalyDetector {
    fn default() -> Self {
        Self::new(AnomalyConfig::default())
    }
}

impl AnomalyDetector {
    /// A detector with the given tuning.
    pub fn new(config: AnomalyConfig) -> Self {
        Self {
            config,
            grants: Mutex::new(HashMap::new()),
        }
    }

    /// Records one served request of `grant` that disclosed `categories`, and returns the
    /// signals it raised (usually none).
    pub fn observe<'c>(
        &self,
        grant: &GrantId,
        categories: impl IntoIterator<Item = &'c CategoryId>,
        now: OffsetDateTime,
    ) -> Vec<AnomalySignal> {
        let config = &self.config;
        let mut grants = self
            .grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let activity = grants
            .entry(grant.clone())
            .or_insert_with(|| GrantActivity::new(now));
        activity.roll(config, now);
        activity.last_seen = now;
        activity.requests = activity.requests.saturating_add(1);
        for category in categories {
            if !activity.categories.contains(category) {
                activity.categories.insert(category.clone());
            }
        }

        let mut signals = Vec::new();
        if activity.windows_seen >= config.warmup_windows {
            let observed = activity.requests;
            let threshold = (config.rate_factor * activity.baseline_requests)
                .max(f64::from(config.min_requests));
            if !activity.rate_signalled && f64::from(observed) > threshold {
                activity.rate_signalled = true;
                signals.push(AnomalySignal {
                    grant: grant.clone(),
                    kind: AnomalyKind::RateSpike {
                        observed,
                        baseline: activity.baseline_requests,
                    },
                    window_start: activity.window_start,
                });
            }
            let breadth = activity.categories.len() as u32;
            let threshold = (config.breadth_factor * activity.baseline_categories)
                .max(f64::from(config.min_categories));
            if !activity.breadth_signalled && f64::from(breadth) > threshold {
                activity.breadth_signalled = true;
                signals.push(AnomalySignal {
                    grant: grant.clone(),
                    kind: AnomalyKind::BreadthSpike {
                        observed: breadth,
                        baseline: activity.baseline_categories,
                    },
                    window_start: activity.window_start,
                });
            }
        }
        if grants.len() > 10_000 {
            let expiry = config.idle_expiry;
            grants.retain(|_, activity| now - activity.last_seen < expiry);
        }
        signals
    }

    /// Forgets a grant's history (after revocation, say).
    pub fn forget(&self, grant: &GrantId) {
        self.grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(grant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    fn cat(id: &str) -> CategoryId {
        CategoryId::new(id).unwrap()
    }

    /// Thirty minutes of one sip: ten vital-sign reads a minute.
    fn steady(detector: &AnomalyDetector, grant: &GrantId) -> OffsetDateTime {
        let mut now = T0;
        for _minute in 0..30 {
            for i in 0..10 {
                let at = now + Duration::seconds(i * 5);
                assert!(
                    detector
                        .observe(grant, &[cat("vital-signs")], at)
                        .is_empty()
                );
            }
            now += Duration::minutes(1);
        }
        now
    }

    #[test]
    fn a_fire_hose_after_a_sip_is_flagged_once() {
        let detector = AnomalyDetector::default();
        let grant = GrantId::new("g1").unwrap();
        let now = steady(&detector, &grant);
        let mut signals = Vec::new();
        for i in 0..500 {
            signals.extend(detector.observe(
                &grant,
                &[cat("vital-signs")],
                now + Duration::milliseconds(i),
            ));
        }
        assert_eq!(signals.len(), 1, "{signals:?}");
        let AnomalyKind::RateSpike { observed, baseline } = signals[0].kind else {
            panic!("expected a rate spike")
        };
        assert_eq!(observed, 101);
        assert!((baseline - 10.0).abs() < 0.5, "{baseline}");
    }

    #[test]
    fn walking_every_category_is_flagged() {
        let detector = AnomalyDetector::default();
        let grant = GrantId::new("g2").unwrap();
        let now = steady(&detector, &grant);
        let all = [
            "vital-signs",
            "laboratory",
            "problems",
            "medications",
            "allergies",
            "immunizations",
            "procedures",
        ];
        let mut signals = Vec::new();
        for (i, id) in all.iter().enumerate() {
            signals.extend(detector.observe(&grant, &[cat(id)], now + Duration::seconds(i as i64)));
        }
        assert_eq!(signals.len(), 1);
        assert!(matches!(
            signals[0].kind,
            AnomalyKind::BreadthSpike { observed: 6, .. }
        ));
    }

    #[test]
    fn new_and_quiet_grants_are_not_flagged() {
        let detector = AnomalyDetector::default();
        let grant = GrantId::new("g3").unwrap();
        // A brand-new grant downloading its history is expected, not anomalous.
        for i in 0..1000 {
            assert!(
                detector
                    .observe(&grant, &[cat("laboratory")], T0 + Duration::milliseconds(i))
                    .is_empty()
            );
        }
        // Below the absolute floors nothing fires, whatever the ratio.
        let quiet = GrantId::new("g4").unwrap();
        let mut now = T0;
        for _ in 0..10 {
            detector.observe(&quiet, &[cat("laboratory")], now);
            now += Duration::minutes(1);
        }
        for i in 0..50 {
            assert!(
                detector
                    .observe(&quiet, &[cat("laboratory")], now + Duration::seconds(i))
                    .is_empty()
            );
        }
    }

    #[test]
    fn signals_rearm_in_the_next_window() {
        let detector = AnomalyDetector::default();
        let grant = GrantId::new("g5").unwrap();
        let now = steady(&detector, &grant);
        let burst = |start: OffsetDateTime, count: i64| {
            (0..count)
                .flat_map(|i| {
                    detector.observe(
                        &grant,
                        &[cat("vital-signs")],
                        start + Duration::milliseconds(i),
                    )
                })
                .count()
        };
        assert_eq!(burst(now, 200), 1);
        // The baseline learns from each window (10 → 29 → 51.1 per window): the next window
        // needs more than 290 requests to fire, the one after more than 511; a signal fires
        // once per window, not once per request.
        assert_eq!(burst(now + Duration::minutes(1), 250), 0);
        assert_eq!(burst(now + Duration::minutes(2), 600), 1);
    }
}
