//! The `Date` header's value, formatted once a second per thread, as hyper's server does.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// "Sun, 06 Nov 1994 08:49:37 GMT"
const LENGTH: usize = 29;

thread_local! {
    static CACHED: RefCell<(u64, [u8; LENGTH])> = const { RefCell::new((u64::MAX, [0; LENGTH])) };
}

/// Calls `write` with the current date, formatted for the `Date` header (RFC 9110 §5.6.7).
pub(super) fn with(write: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            let formatted = httpdate::fmt_http_date(now);
            text.copy_from_slice(&formatted.as_bytes()[..LENGTH]);
            *cached_second = second;
        }
        write(text);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_an_http_date_that_parses_back_to_now() {
        let mut seen = Vec::new();
        super::with(|date| seen.extend_from_slice(date));
        let text = std::str::from_utf8(&seen).unwrap();
        let parsed = httpdate::parse_http_date(text).expect(text);
        let off = std::time::SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off.as_secs() <= 1, "{text} is now");
        assert!(text.ends_with(" GMT"), "{text}");
    }
}
