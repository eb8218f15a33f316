//! Times the validation of a cluster's cron schedule (parse, then a year of
//! fire times checked against the server's bounds) and one next-due
//! computation, for a few patterns. Run:
//! `cargo run --release -p omni-resources --example schedule_check_bench`

use std::time::{Duration, Instant};

use omni_resources::cron::{check_gaps, CronSchedule};
use omni_resources::Timestamp;

fn main() {
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let day = Duration::from_secs(86400);
    for (pattern, tz) in [
        ("0 */6 * * *", None),
        ("0 * * * *", None),
        ("0 * * * *", Some("Europe/Berlin")),
        ("30 2 * * *", Some("America/New_York")),
    ] {
        let rounds = 50;
        let start = Instant::now();
        for _ in 0..rounds {
            let s = CronSchedule::parse(pattern, tz).expect("valid pattern");
            check_gaps(&s, pattern, now, hour, Some(day), "backup schedule").expect("in bounds");
        }
        let check = start.elapsed() / rounds;
        let s = CronSchedule::parse(pattern, tz).expect("valid pattern");
        let rounds = 10_000;
        let start = Instant::now();
        for i in 0..rounds {
            std::hint::black_box(s.next_after(Timestamp::from_unix(now.seconds + i64::from(i))));
        }
        let next = start.elapsed() / rounds;
        println!(
            "{pattern:>12} {:<16} validate {:>9.3} ms   next fire time {:>6.2} µs",
            tz.unwrap_or("UTC"),
            check.as_secs_f64() * 1e3,
            next.as_secs_f64() * 1e6
        );
    }
}
