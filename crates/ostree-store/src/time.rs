//! Times as `ostree` prints and reads them: `ostree log`'s dates,
//! `summary --view`'s ISO 8601, and `commit --timestamp=`'s input.

/// `YYYY-MM-DD HH:MM:SS +0000`, as `ostree log` and `show` print a commit's
/// date.
pub fn format_log_date(t: u64) -> String {
    format_utc(t, ' ', " +0000")
}

/// GLib's ISO 8601 in UTC (`YYYY-MM-DDTHH:MM:SS+00`), the way `ostree
/// summary --view` prints times.
pub fn format_iso(t: u64) -> String {
    format_utc(t, 'T', "+00")
}

/// `YYYY-MM-DD{sep}HH:MM:SS{zone}` of epoch seconds (any `u64`: the day
/// count always fits).
fn format_utc(t: u64, sep: char, zone: &str) -> String {
    let (y, m, d) = civil_time::civil_from_days((t / 86_400) as i64);
    let s = t % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}{zone}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A time `commit --timestamp=` does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Could not parse '{0}'")]
pub struct BadTime(pub String);

/// `@EPOCH`, or ISO 8601 `YYYY-MM-DD[T ]HH:MM[:SS][Z|±HH[:]MM]` (UTC when
/// no zone is given), or a date alone, as seconds since the epoch.
pub fn parse_timestamp(s: &str) -> Result<u64, BadTime> {
    let bad = || BadTime(s.to_string());
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().map_err(|_| bad());
    }
    let (date, rest) = s.split_at(s.find(['T', ' ']).unwrap_or(s.len()));
    let mut dp = date.splitn(3, '-');
    let (y, mo, d): (i64, u32, u32) = (
        dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?,
        dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?,
        dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = civil_time::days_from_civil(y, mo, d) * 86_400;
    let rest = rest.get(1..).unwrap_or("");
    if !rest.is_empty() {
        let (time, zone) = match rest.find(['Z', '+', '-']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut tp = time.split(':');
        let h: i64 = tp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let mi: i64 = tp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let sec: f64 = tp
            .next()
            .map(|x| x.parse().map_err(|_| bad()))
            .transpose()?
            .unwrap_or(0.0);
        secs += h * 3600 + mi * 60 + sec as i64;
        if let Some(z) = zone.strip_prefix(['+', '-']) {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (zh, zm) = z
                .split_once(':')
                .unwrap_or((z.get(..2).unwrap_or(z), z.get(2..).unwrap_or("0")));
            let off =
                zh.parse::<i64>().map_err(|_| bad())? * 3600 + zm.parse::<i64>().unwrap_or(0) * 60;
            secs -= sign * off;
        } else if !zone.is_empty() && zone != "Z" {
            return Err(bad());
        }
    }
    u64::try_from(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_timestamp("@1700000000").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00Z").unwrap(),
            1_704_067_200
        );
        assert_eq!(parse_timestamp("2024-01-01").unwrap(), 1_704_067_200);
        assert_eq!(
            parse_timestamp("2024-01-01 01:00+01:00").unwrap(),
            1_704_067_200
        );
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00-0130").unwrap(),
            1_704_072_600
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2024-13-01").is_err());
        assert_eq!(format_log_date(1_704_067_200), "2024-01-01 00:00:00 +0000");
        assert_eq!(format_log_date(951_782_400), "2000-02-29 00:00:00 +0000");
        assert_eq!(format_iso(1_704_067_261), "2024-01-01T00:01:01+00");
    }
}
