//! The programme's deadlines: the year's assistance list (Table 1) is due at the province by
//! 30 July, the completion summary (Table 2) by 15 November (Liaoning's plan); a province
//! may set other days (`province_deadlines`). Days left count in China Standard Time.

use crate::sql::{params, Connection, OptionalExtension};
use serde::Serialize;
use time::{Date, Month};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deadlines {
    /// (month, day) the list is due.
    pub list_due: (u8, u8),
    pub summary_due: (u8, u8),
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { list_due: (7, 30), summary_due: (11, 15) }
    }
}

fn month_day(field: &'static str, s: &str) -> Result<(u8, u8), (&'static str, String, String)> {
    let bad = || (field, format!("“{s}”应为 月-日，如 07-30"), format!("{s:?} must be month-day such as 07-30"));
    let (m, d) = s.trim().split_once('-').ok_or_else(bad)?;
    let (m, d): (u8, u8) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // Any year that has the day: 2024 has 29 February.
    Date::from_calendar_date(2024, Month::try_from(m).map_err(|_| bad())?, d).map_err(|_| bad())?;
    Ok((m, d))
}

impl Deadlines {
    /// From two `MM-DD` texts; an error names the field.
    pub fn parse(list_due: &str, summary_due: &str) -> Result<Deadlines, (&'static str, String, String)> {
        Ok(Deadlines {
            list_due: month_day("list_due", list_due)?,
            summary_due: month_day("summary_due", summary_due)?,
        })
    }

    pub fn text(md: (u8, u8)) -> String {
        format!("{:02}-{:02}", md.0, md.1)
    }
}

/// One deadline of a year with the days left from `today` (negative: past).
#[derive(Debug, Clone, Serialize)]
pub struct Due {
    pub what_zh: &'static str,
    pub what_en: &'static str,
    /// `YYYY-MM-DD`
    pub date: String,
    pub days_left: i64,
    /// `-days_left`, for the text "N days past".
    pub days_past: i64,
}

fn date_of(year: i32, (m, d): (u8, u8)) -> Option<Date> {
    // 29 February in a year without it falls on 28 February.
    let month = Month::try_from(m).ok()?;
    Date::from_calendar_date(year, month, d).or_else(|_| Date::from_calendar_date(year, month, d - 1)).ok()
}

/// The deadlines of programme year `year` as of `today`.
pub fn due(d: &Deadlines, year: i32, today: Date) -> Vec<Due> {
    [
        ("帮扶对象名单报送", "Assistance list due", d.list_due),
        ("完成情况汇总表报送", "Completion summary due", d.summary_due),
    ]
    .into_iter()
    .filter_map(|(zh, en, md)| {
        let date = date_of(year, md)?;
        let days_left = (date - today).whole_days();
        Some(Due { what_zh: zh, what_en: en, date: date.to_string(), days_left, days_past: -days_left })
    })
    .collect()
}

/// Today in China Standard Time (UTC+8).
pub fn today_cst() -> Date {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(8)).date()
}

pub fn of_province(conn: &Connection, province: &str) -> crate::sql::Result<Deadlines> {
    let row: Option<(String, String)> = conn
        .query_row("SELECT list_due, summary_due FROM province_deadlines WHERE province = ?1", [province], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(row.and_then(|(l, s)| Deadlines::parse(&l, &s).ok()).unwrap_or_default())
}

pub fn set(conn: &Connection, province: &str, d: &Deadlines) -> crate::sql::Result<()> {
    conn.execute(
        "INSERT INTO province_deadlines (province, list_due, summary_due) VALUES (?1, ?2, ?3)
         ON CONFLICT (province) DO UPDATE SET list_due = ?2, summary_due = ?3",
        params![province, Deadlines::text(d.list_due), Deadlines::text(d.summary_due)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_left_and_bad_days() {
        let d = Deadlines::default();
        let due = due(&d, 2025, date!(2025 - 07 - 01));
        assert_eq!((due[0].date.as_str(), due[0].days_left), ("2025-07-30", 29));
        assert_eq!((due[1].date.as_str(), due[1].days_left), ("2025-11-15", 137));
        assert_eq!(Deadlines::parse("13-01", "11-15").unwrap_err().0, "list_due");
        assert_eq!(Deadlines::parse("07-30", "x").unwrap_err().0, "summary_due");
        assert_eq!(Deadlines::parse("7-31", "12-1").unwrap().summary_due, (12, 1));
    }
}
