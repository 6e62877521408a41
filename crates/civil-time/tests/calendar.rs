//! The public conversions against dates whose epoch values are known from
//! elsewhere (`date -u -d @N`), across leap days, century rules and the
//! epoch's edges, and as each other's inverse over a wide range.

use civil_time::{Utc, civil_from_days, days_from_civil, utc};

#[test]
fn dates_known_from_elsewhere() {
    for (days, date) in [
        (0, (1970, 1, 1)),
        (-1, (1969, 12, 31)),
        (59, (1970, 3, 1)),
        (11_016, (2000, 2, 29)),
        (11_017, (2000, 3, 1)),
        // 2100 is not a leap year: 28 February is followed by 1 March.
        (47_540, (2100, 2, 28)),
        (47_541, (2100, 3, 1)),
        (-719_468, (0, 3, 1)),
        (2_932_896, (9999, 12, 31)),
    ] {
        assert_eq!(civil_from_days(days), date, "day {days}");
        assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
    }
}

#[test]
fn epoch_seconds_to_utc() {
    // 2038-01-19 03:14:07, the last second of a signed 32-bit time_t.
    assert_eq!(
        utc(2_147_483_647),
        Utc {
            year: 2038,
            month: 1,
            day: 19,
            hour: 3,
            minute: 14,
            second: 7,
        }
    );
    // Before the epoch, the time of day still counts forward from midnight.
    assert_eq!(
        utc(-86_399),
        Utc {
            year: 1969,
            month: 12,
            day: 31,
            hour: 0,
            minute: 0,
            second: 1,
        }
    );
}

#[test]
fn utc_orders_as_time_does() {
    let times = [-90_000, -1, 0, 1, 59, 3_600, 86_399, 86_400, 951_782_400];
    for w in times.windows(2) {
        assert!(utc(w[0]) < utc(w[1]), "{} < {}", w[0], w[1]);
    }
}

#[test]
fn each_is_the_inverse_of_the_other() {
    for d in (-1_000_000..1_000_000).step_by(263) {
        let (y, m, day) = civil_from_days(d);
        assert!((1..=12).contains(&m) && (1..=31).contains(&day), "{d}");
        assert_eq!(days_from_civil(y, m, day), d);
        // The next day is the next date.
        let next = civil_from_days(d + 1);
        assert!(next > (y, m, day));
    }
}
