//! A synthetic city pushed by an inspector's phone: three counties, enterprises of every
//! industry, visits that cover some of the six ones (with traps: a later "not compliant"
//! overriding an earlier "compliant", a training not organised by an authority, a visit of
//! another year, a deleted visit), and two conflicts. What each enterprise's Table 1 row
//! must say is decided here first, as plain booleans, and the visits are written to say it.

// `i % n == 0` reads as the pattern it is; is_multiple_of is newer than the MSRV.
#![allow(clippy::manual_is_multiple_of)]

use automerge::ActorId;
use ohassist_core::model::*;
use ohassist_server::accounts::Role;

use crate::common::{credit_code, Fixture, Record};

pub const CITY: &str = "210100";
pub const COUNTIES: [(&str, &str); 3] = [("210102", "和平区"), ("210103", "沈河区"), ("210104", "大东区")];
pub const YEAR: i32 = 2025;
pub const ENTERPRISES: usize = 18;

/// What Table 1 must show for one enterprise, decided before any record is written.
#[derive(Debug, Clone)]
pub struct Expected {
    pub code: String,
    pub name: String,
    pub county_code: &'static str,
    pub county_name: &'static str,
    pub industry: Industry,
    pub on_list: bool,
    pub declared: bool,
    pub detection: bool,
    pub exam: bool,
    pub principal: bool,
    pub managers: bool,
    pub workers: bool,
    pub special: bool,
    pub special_done: bool,
    pub city_level: bool,
    /// Months (1-12) of this year's visits that are not deleted, one entry per visit.
    pub visit_months: Vec<u32>,
}

pub struct City {
    pub f: Fixture,
    pub expected: Vec<Expected>,
    pub inspector: String,
    /// A visit in state "submitted", of the first county.
    pub submitted_visit: String,
    /// A visit whose `notes` two phones wrote concurrently.
    pub conflicted_visit: String,
}

fn session(audience: TrainingAudience, by_authority: bool) -> TrainingSession {
    TrainingSession {
        date: "2025-06-01".into(),
        audience: Some(audience),
        attendees: 12,
        organised_by_authority: by_authority,
        ..Default::default()
    }
}

fn expected(i: usize) -> Expected {
    let (county_code, county_name) = COUNTIES[i % 3];
    let in_surveillance = i % 5 == 1;
    let special = i % 4 == 0;
    Expected {
        code: credit_code(county_code, i as u32 + 1),
        name: format!("企业{i:02}"),
        county_code,
        county_name,
        industry: Industry::ALL[i % Industry::ALL.len()],
        on_list: i != 17,
        declared: i % 2 == 0,
        detection: i % 3 == 0 || in_surveillance,
        exam: i % 4 != 1,
        principal: i % 3 != 2,
        managers: i % 2 == 1,
        workers: i % 5 != 0,
        special,
        special_done: special && i % 8 == 0,
        city_level: i % 6 == 0,
        visit_months: if i % 7 == 3 { vec![3, 3] } else { vec![3, 6] },
    }
}

fn enterprise_record(e: &Expected, i: usize) -> Enterprise {
    let mut r = Enterprise {
        credit_code: e.code.clone(),
        name: e.name.clone(),
        county: County { code: e.county_code.into(), name: e.county_name.into() },
        industry: Some(e.industry),
        special_governance: e.special,
        city_level_target: e.city_level,
        in_surveillance_scope: i % 5 == 1,
        ..Default::default()
    };
    if e.on_list {
        r.add_year(YEAR);
    } else {
        r.add_year(2024);
    }
    r
}

/// The visits that make `e` what it must be.
fn visits(e: &Expected, i: usize) -> Vec<Visit> {
    let base = |date: &str| Visit {
        enterprise_id: e.code.clone(),
        county_code: e.county_code.into(),
        visit_date: date.into(),
        inspectors: [("insp".to_string(), "检查员".to_string())].into(),
        ..Default::default()
    };
    let answer = |b: bool| if b { Compliance::Compliant } else { Compliance::NotCompliant };
    let mut march = base("2025-03-10");
    let mut june = base("2025-06-15");
    // Declaration: trap — compliant in March, then not compliant in June.
    if !e.declared && i % 4 == 1 {
        march.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
        june.self_inspection.set(ChecklistItem::Declaration, Compliance::NotCompliant, "申报已过期");
    } else {
        march.self_inspection.set(ChecklistItem::Declaration, answer(e.declared), "");
    }
    if i % 5 != 1 {
        march.self_inspection.set(ChecklistItem::Detection, answer(e.detection), "");
    }
    june.self_inspection.set(ChecklistItem::HealthExamination, answer(e.exam), "");
    if e.principal {
        june.training.sessions.insert(new_item_id(), session(TrainingAudience::Principal, true));
    }
    if e.managers {
        june.training.sessions.insert(new_item_id(), session(TrainingAudience::Manager, true));
    } else if i % 3 == 0 {
        // Trap: a training the enterprise organised itself does not count.
        june.training.sessions.insert(new_item_id(), session(TrainingAudience::Manager, false));
    }
    if e.workers {
        june.training.sessions.insert(new_item_id(), session(TrainingAudience::Workers, true));
    }
    if e.special {
        let effect = if e.special_done { EffectEvaluation::Qualified } else { EffectEvaluation::Improved };
        june.remediation.posts.insert(
            new_item_id(),
            OverLimitPost {
                post: "破碎".into(),
                measured_value: Some(92.0),
                limit: Some(85.0),
                effect: Some(effect),
                ..Default::default()
            },
        );
    }
    if i % 2 == 0 {
        june.management_system.system_established = Some(true);
    }
    let mut out = vec![march];
    if e.visit_months == [3, 6] {
        out.push(june);
    } else {
        // Everything of June moves to March's date when there is no June visit.
        june.visit_date = "2025-03-20".into();
        out.push(june);
    }
    // Trap: a visit of another year, and a deleted visit, both saying "declared".
    let mut old = base("2024-11-01");
    old.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
    let mut deleted = base("2025-04-01");
    deleted.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
    deleted.deleted = true;
    out.push(old);
    out.push(deleted);
    out
}

pub async fn build() -> City {
    let f = Fixture::new();
    let inspector = f.user_token("insp", Role::Inspector, CITY, "phone-1").await;
    f.add_user("city", Role::Supervisor, CITY);
    f.add_user("heping", Role::Supervisor, COUNTIES[0].0);
    f.add_user("admin", Role::Admin, CITY);
    let mut expected_all = Vec::new();
    let mut changes = Vec::new();
    let mut submitted_visit = String::new();
    let mut conflicted = None;
    for i in 0..ENTERPRISES {
        let e = expected(i);
        let mut er = Record::new(RecordKind::Enterprise, &e.code);
        changes.push(er.write(&enterprise_record(&e, i)));
        for (k, mut v) in visits(&e, i).into_iter().enumerate() {
            let id = new_item_id();
            if i == 0 && k == 1 {
                v.review.state = ReviewState::Submitted;
                submitted_visit = id.clone();
            }
            let mut vr = Record::new(RecordKind::Visit, &id);
            changes.push(vr.write(&v));
            if i == 1 && k == 0 {
                conflicted = Some((vr, v));
            }
        }
        expected_all.push(e);
    }
    assert_eq!(f.push(&inspector, &changes).await.status, axum::http::StatusCode::OK);

    // Two phones change the same visit's notes offline: a conflict.
    let (mut a, v) = conflicted.unwrap();
    let mut b = Record { doc: a.doc.clone(), actor: ActorId::random() };
    // Phone a also submits it for review (phone b leaves the state alone: no conflict there).
    let mut submitted = Visit { notes: "现场整改已完成".into(), ..v.clone() };
    submitted.review.state = ReviewState::Submitted;
    let ca = a.write(&submitted);
    let cb = b.write(&Visit { notes: "整改尚未完成".into(), ..v.clone() });
    assert_eq!(f.push(&inspector, &[ca, cb]).await.status, axum::http::StatusCode::OK);
    let conflicted_visit = a.doc.id().to_string();
    City { f, expected: expected_all, inspector, submitted_visit, conflicted_visit }
}

impl City {
    /// Table 1 rows counted here: on the list, by county code then name, 是/否 as text.
    pub fn table1(&self) -> Vec<Vec<String>> {
        let yn = |b: bool| if b { "是" } else { "否" }.to_string();
        let mut on: Vec<&Expected> = self.expected.iter().filter(|e| e.on_list).collect();
        on.sort_by(|a, b| (a.county_code, &a.name).cmp(&(b.county_code, &b.name)));
        on.iter()
            .enumerate()
            .map(|(n, e)| {
                vec![
                    (n + 1).to_string(),
                    e.name.clone(),
                    e.county_name.to_string(),
                    e.industry.label_zh().to_string(),
                    yn(e.declared),
                    yn(e.detection),
                    yn(e.exam),
                    yn(e.principal),
                    yn(e.managers),
                    yn(e.workers),
                    yn(e.special),
                    yn(e.city_level),
                ]
            })
            .collect()
    }

    /// Table 2 rows counted here: one per county, then 合计.
    pub fn table2(&self) -> Vec<Vec<String>> {
        let count = |county: Option<&str>, pred: &dyn Fn(&Expected) -> bool| {
            self.expected.iter().filter(|e| e.on_list && county.is_none_or(|c| e.county_code == c) && pred(e)).count()
        };
        let row = |name: &str, county: Option<&str>| {
            let preds: [&dyn Fn(&Expected) -> bool; 9] = [
                &|_| true,
                &|e| e.declared,
                &|e| e.detection,
                &|e| e.exam,
                &|e| e.principal,
                &|e| e.managers,
                &|e| e.workers,
                &|e| e.special,
                &|e| e.special_done,
            ];
            std::iter::once(name.to_string()).chain(preds.iter().map(|p| count(county, p).to_string())).collect()
        };
        let mut rows: Vec<Vec<String>> = COUNTIES.iter().map(|(c, n)| row(n, Some(c))).collect();
        rows.push(row("合计", None));
        rows
    }
}
