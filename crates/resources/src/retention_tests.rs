use super::*;

/// Unix seconds of a UTC date and time.
fn ts(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
    days_from_civil(y, m, d) * 86_400 + h * 3_600 + min * 60
}

fn kept(decisions: &[Decision]) -> Vec<i64> {
    decisions
        .iter()
        .filter(|d| d.keep())
        .map(|d| d.at)
        .collect()
}

fn policy(last: u32, hourly: u32, daily: u32, weekly: u32, monthly: u32) -> RetentionPolicy {
    RetentionPolicy {
        keeplast: last,
        keephourly: hourly,
        keepdaily: daily,
        keepweekly: weekly,
        keepmonthly: monthly,
    }
}

/// A small deterministic generator, so property checks need no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[test]
fn civil_dates_round_trip_and_match_known_days() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(ts(2023, 11, 14, 22, 13), 1_700_000_000 - 20);
    for days in -800_000..800_000i64 {
        if days % 97 != 0 {
            continue;
        }
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
    }
}

#[test]
fn iso_weeks_follow_their_thursday() {
    let week = |y, m, d| iso_week(days_from_civil(y, m, d));
    // 2021-01-03 is a Sunday in the last week of 2020 (which has 53).
    assert_eq!(week(2021, 1, 3), (2020, 53));
    assert_eq!(week(2021, 1, 4), (2021, 1));
    // 2024-12-30 is a Monday whose Thursday is in 2025.
    assert_eq!(week(2024, 12, 29), (2024, 52));
    assert_eq!(week(2024, 12, 30), (2025, 1));
    assert_eq!(week(2026, 1, 1), (2026, 1));
    assert_eq!(week(1970, 1, 1), (1970, 1));
    assert_eq!(week(2027, 1, 1), (2026, 53));
}

#[test]
fn periods_bucket_and_label_in_utc() {
    let t = ts(2024, 12, 31, 23, 59);
    assert_eq!(Period::Hour.label(t), "2024-12-31T23");
    assert_eq!(Period::Day.label(t), "2024-12-31");
    assert_eq!(Period::Week.label(t), "2025-W01");
    assert_eq!(Period::Month.label(t), "2024-12");
    let next = t + 60; // 2025-01-01T00:00
    assert_ne!(Period::Hour.bucket(t), Period::Hour.bucket(next));
    assert_ne!(Period::Day.bucket(t), Period::Day.bucket(next));
    assert_eq!(Period::Week.bucket(t), Period::Week.bucket(next));
    assert_ne!(Period::Month.bucket(t), Period::Month.bucket(next));
    // Sunday night and Monday morning are different weeks.
    let sunday = ts(2024, 1, 7, 23, 0);
    assert_ne!(
        Period::Week.bucket(sunday),
        Period::Week.bucket(sunday + 3_600)
    );
    assert_eq!(
        Period::Week.bucket(ts(2024, 1, 1, 0, 0)),
        Period::Week.bucket(sunday)
    );
}

#[test]
fn empty_policy_keeps_everything() {
    let times = [5, 1, 3];
    let plan = plan(&times, &RetentionPolicy::default(), &HashSet::new());
    assert_eq!(kept(&plan), vec![5, 3, 1]);
    assert!(plan.iter().all(|d| d.reasons == vec![Reason::NoPolicy]));
}

#[test]
fn keep_last_keeps_the_newest_n_in_any_input_order() {
    let times = [40, 10, 30, 20, 50, 30];
    let p = plan(&times, &policy(2, 0, 0, 0, 0), &HashSet::new());
    assert_eq!(
        p.iter().map(|d| d.at).collect::<Vec<_>>(),
        [50, 40, 30, 20, 10]
    );
    assert_eq!(kept(&p), vec![50, 40]);
    assert_eq!(p[0].reasons, vec![Reason::Newest, Reason::Last]);
    assert_eq!(p[1].reasons, vec![Reason::Last]);
    // More than there are: all kept.
    assert_eq!(
        kept(&plan(&times, &policy(9, 0, 0, 0, 0), &HashSet::new())).len(),
        5
    );
}

#[test]
fn daily_keeps_the_newest_of_each_day_that_has_backups() {
    // Three backups a day on Jan 1-3, none on Jan 4, one on Jan 5.
    let mut times = Vec::new();
    for day in 1..=3 {
        for hour in [1, 9, 17] {
            times.push(ts(2024, 1, day, hour, 0));
        }
    }
    times.push(ts(2024, 1, 5, 12, 0));
    let p = plan(&times, &policy(0, 0, 3, 0, 0), &HashSet::new());
    // Days with backups count, not calendar days: Jan 5, 3, 2.
    assert_eq!(
        kept(&p),
        vec![
            ts(2024, 1, 5, 12, 0),
            ts(2024, 1, 3, 17, 0),
            ts(2024, 1, 2, 17, 0)
        ]
    );
    assert_eq!(
        p[1].reasons,
        vec![Reason::Period(Period::Day, "2024-01-03".into())]
    );
    assert_eq!(p[1].reasons[0].to_string(), "daily 2024-01-03");
}

#[test]
fn hourly_weekly_and_monthly_buckets() {
    let times = [
        ts(2024, 1, 1, 10, 5),
        ts(2024, 1, 1, 10, 55),
        ts(2024, 1, 1, 11, 30),
        ts(2024, 1, 7, 23, 0),  // Sunday, week 1
        ts(2024, 1, 8, 0, 30),  // Monday, week 2
        ts(2024, 2, 29, 12, 0), // leap day
        ts(2024, 3, 1, 0, 0),
    ];
    let hourly = plan(&times, &policy(0, 4, 0, 0, 0), &HashSet::new());
    assert_eq!(
        kept(&hourly),
        vec![
            ts(2024, 3, 1, 0, 0),
            ts(2024, 2, 29, 12, 0),
            ts(2024, 1, 8, 0, 30),
            ts(2024, 1, 7, 23, 0)
        ]
    );
    let weekly = plan(&times, &policy(0, 0, 0, 3, 0), &HashSet::new());
    // Feb 26 - Mar 3 is one week (W09); then W02, then W01's newest.
    assert_eq!(
        kept(&weekly),
        vec![
            ts(2024, 3, 1, 0, 0),
            ts(2024, 1, 8, 0, 30),
            ts(2024, 1, 7, 23, 0)
        ]
    );
    let monthly = plan(&times, &policy(0, 0, 0, 0, 12), &HashSet::new());
    assert_eq!(
        kept(&monthly),
        vec![
            ts(2024, 3, 1, 0, 0),
            ts(2024, 2, 29, 12, 0),
            ts(2024, 1, 8, 0, 30)
        ]
    );
    // Two hourly slots inside one hour: only the newer counts.
    let h2 = plan(&times[..3], &policy(0, 2, 0, 0, 0), &HashSet::new());
    assert_eq!(
        kept(&h2),
        vec![ts(2024, 1, 1, 11, 30), ts(2024, 1, 1, 10, 55)]
    );
}

#[test]
fn rules_are_a_union_with_reasons_and_pins() {
    // One backup every 6 hours for 40 days.
    let start = ts(2024, 1, 1, 0, 0);
    let times: Vec<i64> = (0..160).map(|i| start + i * 6 * 3_600).collect();
    let pinned: HashSet<i64> = [start].into_iter().collect();
    let p = plan(&times, &policy(3, 0, 7, 4, 2), &pinned);
    let k = kept(&p);
    let newest = *times.last().unwrap();
    // last 3 (the newest three), daily 7: newest of Feb 9..Feb 3 (18:00),
    // weekly 4 / monthly 2 add Sunday and month ends, and the pinned first.
    assert!(k.contains(&newest));
    assert!(k.contains(&start));
    let reasons_of = |t: i64| p.iter().find(|d| d.at == t).unwrap().reasons.clone();
    assert_eq!(reasons_of(start), vec![Reason::Pinned]);
    assert!(reasons_of(ts(2024, 1, 31, 18, 0))
        .contains(&Reason::Period(Period::Month, "2024-01".into())));
    assert!(reasons_of(ts(2024, 1, 28, 18, 0))
        .contains(&Reason::Period(Period::Week, "2024-W04".into())));
    // Counting by hand: 3 last (2 of them also daily) + 6 more days, weekly
    // adds W05, W04, W03 Sundays (W06 is today's), monthly Jan 31, pinned.
    let mut expected: Vec<i64> = vec![newest, newest - 6 * 3_600, newest - 12 * 3_600];
    let last_day = ts(2024, 2, 9, 0, 0);
    for back in 1..7 {
        expected.push(last_day - back * 86_400 + 18 * 3_600);
    }
    expected.extend([
        ts(2024, 2, 4, 18, 0),
        ts(2024, 1, 28, 18, 0),
        ts(2024, 1, 21, 18, 0),
        ts(2024, 1, 31, 18, 0),
        start,
    ]);
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.dedup();
    assert_eq!(k, expected);
}

#[test]
fn the_newest_is_always_kept_and_plans_are_stable() {
    let mut rng = Lcg(42);
    for round in 0..300 {
        let n = 1 + rng.next(60) as usize;
        let times: Vec<i64> = (0..n)
            .map(|_| 1_700_000_000 + rng.next(90 * 86_400) as i64)
            .collect();
        let p = policy(
            rng.next(4) as u32,
            rng.next(4) as u32,
            rng.next(4) as u32,
            rng.next(3) as u32,
            rng.next(3) as u32,
        );
        let decisions = plan(&times, &p, &HashSet::new());
        let newest = *times.iter().max().unwrap();
        assert!(
            decisions[0].keep() && decisions[0].at == newest,
            "round {round}"
        );
        // Applying the policy to what it kept deletes nothing more.
        let k = kept(&decisions);
        assert_eq!(kept(&plan(&k, &p, &HashSet::new())), k, "round {round}");
    }
}

#[test]
fn pruning_after_every_backup_ends_where_pruning_once_does() {
    let mut rng = Lcg(7);
    for round in 0..100 {
        let p = policy(
            rng.next(3) as u32,
            rng.next(5) as u32,
            rng.next(5) as u32,
            rng.next(4) as u32,
            rng.next(4) as u32,
        );
        let mut t = 1_700_000_000i64;
        let mut all = Vec::new();
        let mut live: Vec<i64> = Vec::new();
        for _ in 0..80 {
            t += 60 + rng.next(2 * 86_400) as i64;
            all.push(t);
            live.push(t);
            live = kept(&plan(&live, &p, &HashSet::new()));
        }
        assert_eq!(
            live,
            kept(&plan(&all, &p, &HashSet::new())),
            "round {round}"
        );
    }
}

#[test]
fn policies_print_as_flags() {
    assert_eq!(RetentionPolicy::default().to_string(), "keep all");
    assert_eq!(
        policy(3, 0, 7, 0, 12).to_string(),
        "keep-last=3 keep-daily=7 keep-monthly=12"
    );
}
