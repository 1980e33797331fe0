//! Medians, percentiles and the process's memory.

/// The median of `v` (nearest rank).
pub(crate) fn median(v: &[f64]) -> f64 {
    percentile(v, 50)
}

/// The `p`th percentile of `v` (nearest rank), for `p` in 1..=100; NaN for no samples.
pub(crate) fn percentile(v: &[f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

/// Resident memory of this process in KiB (`VmRSS`, through procfs).
pub(crate) fn rss_kib() -> u64 {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .ok()
        .and_then(|status| status.vmrss)
        .unwrap_or(0)
}

/// Milliseconds since `t`.
pub(crate) fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
