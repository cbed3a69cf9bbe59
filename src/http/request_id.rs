//! Request ids: the client's `X-Request-Id` when it is sane, else one of ours. The id is in
//! the answer's header, its access line and its error body.

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub(super) fn new() -> RequestIds {
        // Unique enough across restarts and replicas to tell requests apart in logs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = (std::process::id() as u64) << 32 | nanos as u64;
        RequestIds {
            prefix: format!("{:08x}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32),
            next: AtomicU64::new(1),
        }
    }

    /// The id of a request that sent this `X-Request-Id` header (or none).
    pub(super) fn for_request(&self, sent: Option<&str>) -> String {
        if let Some(id) = sent
            && !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_graphic())
        {
            return id.to_owned();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:06x}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_id_is_kept_and_any_other_replaced() {
        let ids = RequestIds::new();
        assert_eq!(ids.for_request(Some("abc-1")), "abc-1");
        for insane in [None, Some(""), Some("has space"), Some(&*"x".repeat(129))] {
            let made = ids.for_request(insane);
            assert!(made.starts_with(&ids.prefix), "{made}");
        }
        assert_ne!(ids.for_request(None), ids.for_request(None));
    }
}
