//! Just enough X.509 reading to tell a person which certificate an upstream presents: subject,
//! issuer and expiry. The certificate's trust is decided by rustls, never here; this reads
//! fields for display only, so a certificate it cannot read is shown as unreadable, not refused.

/// What is shown about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// `CN=..., O=...`.
    pub subject: String,
    pub issuer: String,
    /// Issuer and subject are the same name.
    pub self_signed: bool,
    /// `notAfter` as Unix seconds.
    pub not_after: i64,
}

impl CertSummary {
    /// `notAfter` as `YYYY-MM-DD`.
    pub fn expiry_date(&self) -> String {
        let (y, m, d) = civil_from_days(self.not_after.div_euclid(86_400));
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Whole days from `now` (Unix seconds) to expiry; negative once expired.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// Reads a DER certificate's subject, issuer and expiry.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (_, certificate, _) = tlv(der)?;
    let (_, mut tbs, _) = tlv(certificate)?;
    let mut next = || -> Option<(u8, &[u8])> {
        let (tag, content, rest) = tlv(tbs)?;
        tbs = rest;
        Some((tag, content))
    };
    let (mut tag, _) = next()?;
    if tag == 0xa0 {
        // Explicit version; the serial number follows.
        (tag, _) = next()?;
    }
    if tag != 0x02 {
        return None;
    }
    let _signature_algorithm = next()?;
    let (_, issuer_raw) = next()?;
    let (_, validity) = next()?;
    let (_, subject_raw) = next()?;
    let (_, _, after_not_before) = tlv(validity)?;
    let (time_tag, not_after, _) = tlv(after_not_before)?;
    Some(CertSummary {
        subject: name(subject_raw),
        issuer: name(issuer_raw),
        self_signed: subject_raw == issuer_raw,
        not_after: time(time_tag, not_after)?,
    })
}

/// One DER tag-length-value: `(tag, content, rest)`.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (bytes, rest) = input.split_at(count);
        input = rest;
        bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    if input.len() < length {
        return None;
    }
    let (content, rest) = input.split_at(length);
    Some((tag, content, rest))
}

/// A distinguished name as `CN=..., O=...` (the parts a person recognises a server by).
fn name(mut sequence: &[u8]) -> String {
    const PARTS: &[(&[u8], &str)] = &[(&[0x55, 0x04, 0x03], "CN"), (&[0x55, 0x04, 0x0a], "O")];
    let mut parts = Vec::new();
    while let Some((_, set, rest)) = tlv(sequence) {
        sequence = rest;
        let mut set = set;
        while let Some((_, attribute, rest)) = tlv(set) {
            set = rest;
            let Some((0x06, oid, value)) = tlv(attribute) else {
                continue;
            };
            let Some((_, value, _)) = tlv(value) else {
                continue;
            };
            if let Some((_, label)) = PARTS.iter().find(|(known, _)| *known == oid) {
                parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
            }
        }
    }
    if parts.is_empty() {
        "(no common name)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2027, 12, 31), (2049, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(time(0x17, b"270102030405Z"), Some(days_from_civil(2027, 1, 2) * 86_400 + 3 * 3600 + 4 * 60 + 5));
        assert_eq!(time(0x18, b"20270102030405Z"), time(0x17, b"270102030405Z"));
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(summarize(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }
}
