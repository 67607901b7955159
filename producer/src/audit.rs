//! The audit log: one line per operation that changes what others' jobs do (dead-letter replay and
//! purge, campaign pause/resume/cancel, reload), naming who (the token's name and tenant, never its
//! value), what, on what, and when. Emitted on the tracing target `yizhan_audit` at `warn`, so that
//! the binaries' default filters (and `RUST_LOG=warn`) keep it; `RUST_LOG=...,yizhan_audit=off`
//! silences it.

use std::time::SystemTime;

use crate::auth::Principal;

/// The tracing target of audit lines.
pub const TARGET: &str = "yizhan_audit";

/// Logs one audit line.
pub fn record(principal: &Principal, action: &str, object: &str) {
    tracing::warn!(
        target: TARGET,
        token = %principal.name,
        tenant = principal.tenant.as_deref().unwrap_or("*"),
        action,
        on = object,
        at = %humantime::format_rfc3339_millis(SystemTime::now()),
        "audit"
    );
}
