//! The status of an enterprise for Table 1, and the Table 2 summary, computed from records
//! by pure functions so that phone, server and tests all get the same answer.
//!
//! Rules (the form's notes in `shared/domain.md`, made precise):
//! - only visits of the requested year that are not deleted count;
//! - a checklist answer is the *latest* one recorded (by visit date, then visit id), so a
//!   later "not compliant" overrides an earlier "compliant";
//! - detection counts as done for an enterprise inside the surveillance-monitoring scope;
//! - training counts only when organised by an administrative body and attended (> 0);
//! - special governance is completed when the enterprise is enrolled and either every
//!   over-limit post recorded that year is evaluated "within limit after rectification",
//!   or the latest remediation record confirms no post is over limit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ChecklistItem, Compliance, EffectEvaluation, Enterprise, SixOnes, TrainingAudience, Visit};

/// The computed columns of Table 1 for one enterprise and year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Table1Status {
    /// 是否申报
    pub declared: bool,
    /// 是否开展职业病危害因素检测
    pub detection_done: bool,
    /// 是否开展职业健康检查
    pub health_examination_done: bool,
    /// 主要负责人是否参加培训
    pub principal_trained: bool,
    /// 职业卫生管理人员是否参加培训
    pub managers_trained: bool,
    /// 劳动者是否参加培训
    pub workers_trained: bool,
    /// 是否纳入专项治理
    pub special_governance: bool,
    /// 完成专项治理 (Table 2)
    pub special_governance_completed: bool,
    /// 是否为市级帮扶对象
    pub city_level_target: bool,
}

impl Table1Status {
    /// Every training column at once (for the "training rate").
    pub fn trained(&self) -> bool {
        self.principal_trained && self.managers_trained && self.workers_trained
    }
}

fn visits_of_year(visits: &[Visit], year: i32) -> Vec<&Visit> {
    let mut v: Vec<&Visit> = visits.iter().filter(|v| !v.deleted && v.year() == Some(year)).collect();
    v.sort_by(|a, b| a.visit_date.cmp(&b.visit_date));
    v
}

fn latest_answer(visits: &[&Visit], item: ChecklistItem) -> Option<Compliance> {
    visits.iter().rev().find_map(|v| v.self_inspection.get(item).and_then(|c| c.result))
}

fn trained(visits: &[&Visit], audience: TrainingAudience) -> bool {
    visits.iter().any(|v| {
        v.training
            .sessions
            .values()
            .any(|s| !s.deleted && s.organised_by_authority && s.attendees > 0 && s.audience == Some(audience))
    })
}

fn governance_completed(enterprise: &Enterprise, visits: &[&Visit]) -> bool {
    if !enterprise.special_governance {
        return false;
    }
    let posts: Vec<_> = visits.iter().flat_map(|v| v.remediation.posts.values()).filter(|p| !p.deleted).collect();
    if !posts.is_empty() {
        return posts.iter().all(|p| p.effect == Some(EffectEvaluation::Qualified));
    }
    visits.iter().rev().find(|v| v.covers(SixOnes::Remediation)).is_some_and(|v| v.remediation.no_over_limit_posts)
}

/// Table 1's computed columns for `enterprise` in `year`, from its visits (any order; the
/// visits of other enterprises must not be passed).
pub fn table1_status(enterprise: &Enterprise, visits: &[Visit], year: i32) -> Table1Status {
    let vs = visits_of_year(visits, year);
    let compliant = |item| latest_answer(&vs, item) == Some(Compliance::Compliant);
    Table1Status {
        declared: compliant(ChecklistItem::Declaration),
        detection_done: enterprise.in_surveillance_scope || compliant(ChecklistItem::Detection),
        health_examination_done: compliant(ChecklistItem::HealthExamination),
        principal_trained: trained(&vs, TrainingAudience::Principal),
        managers_trained: trained(&vs, TrainingAudience::Manager),
        workers_trained: trained(&vs, TrainingAudience::Workers),
        special_governance: enterprise.special_governance,
        special_governance_completed: governance_completed(enterprise, &vs),
        city_level_target: enterprise.city_level_target,
    }
}

/// The six ones not yet covered by any visit of `year` (chronic screening excluded: it is
/// Chongqing's addition, reported apart).
pub fn missing_six_ones(visits: &[Visit], year: i32) -> Vec<SixOnes> {
    let vs = visits_of_year(visits, year);
    SixOnes::ALL
        .iter()
        .copied()
        .filter(|item| *item != SixOnes::ChronicScreening)
        .filter(|item| !vs.iter().any(|v| v.covers(*item)))
        .collect()
}

/// One county's row of Table 2 (every figure a count of enterprises).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table2Row {
    pub county_code: String,
    pub county_name: String,
    /// 帮扶企业(家)
    pub assisted: u32,
    pub declared: u32,
    pub detection_done: u32,
    pub health_examination_done: u32,
    pub principal_trained: u32,
    pub managers_trained: u32,
    pub workers_trained: u32,
    pub special_governance: u32,
    pub special_governance_completed: u32,
}

impl Table2Row {
    fn add(&mut self, s: &Table1Status) {
        self.assisted += 1;
        self.declared += s.declared as u32;
        self.detection_done += s.detection_done as u32;
        self.health_examination_done += s.health_examination_done as u32;
        self.principal_trained += s.principal_trained as u32;
        self.managers_trained += s.managers_trained as u32;
        self.workers_trained += s.workers_trained as u32;
        self.special_governance += s.special_governance as u32;
        self.special_governance_completed += s.special_governance_completed as u32;
    }

    fn sum(&mut self, o: &Table2Row) {
        self.assisted += o.assisted;
        self.declared += o.declared;
        self.detection_done += o.detection_done;
        self.health_examination_done += o.health_examination_done;
        self.principal_trained += o.principal_trained;
        self.managers_trained += o.managers_trained;
        self.workers_trained += o.workers_trained;
        self.special_governance += o.special_governance;
        self.special_governance_completed += o.special_governance_completed;
    }
}

/// Table 2: one row per county (ordered by county code), then the 合计 row. Only
/// enterprises on the assistance list count; pass `(county code, county name, status)` for
/// each of them.
pub fn table2<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, Table1Status)>) -> (Vec<Table2Row>, Table2Row) {
    let mut by_county: BTreeMap<&str, Table2Row> = BTreeMap::new();
    for (code, name, status) in rows {
        let row = by_county.entry(code).or_insert_with(|| Table2Row {
            county_code: code.to_string(),
            county_name: name.to_string(),
            ..Default::default()
        });
        row.add(&status);
    }
    let mut total = Table2Row { county_name: "合计".to_string(), ..Default::default() };
    for row in by_county.values() {
        total.sum(row);
    }
    (by_county.into_values().collect(), total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn enterprise() -> Enterprise {
        let mut e = Enterprise { credit_code: "91350100M000100Y43".into(), ..Default::default() };
        e.add_year(2025);
        e
    }

    fn visit(date: &str) -> Visit {
        Visit { enterprise_id: "91350100M000100Y43".into(), visit_date: date.into(), ..Default::default() }
    }

    fn session(audience: TrainingAudience, by_authority: bool, attendees: i64) -> TrainingSession {
        TrainingSession {
            audience: Some(audience),
            organised_by_authority: by_authority,
            attendees,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_recorded_means_nothing_done() {
        let s = table1_status(&enterprise(), &[], 2025);
        assert_eq!(s, Table1Status::default());
        assert_eq!(missing_six_ones(&[], 2025).len(), 6);
    }

    #[test]
    fn checklist_columns_follow_the_latest_answer() {
        let mut v1 = visit("2025-03-01");
        v1.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
        v1.self_inspection.set(ChecklistItem::HealthExamination, Compliance::Compliant, "");
        let mut v2 = visit("2025-05-01");
        v2.self_inspection.set(ChecklistItem::HealthExamination, Compliance::NotCompliant, "体检过期");
        let s = table1_status(&enterprise(), &[v2, v1], 2025);
        assert!(s.declared);
        assert!(!s.health_examination_done, "the later answer wins");
        assert!(!s.detection_done);
    }

    #[test]
    fn surveillance_scope_counts_as_detection() {
        let mut e = enterprise();
        e.in_surveillance_scope = true;
        assert!(table1_status(&e, &[], 2025).detection_done);
    }

    #[test]
    fn other_years_and_deleted_visits_do_not_count() {
        let mut old = visit("2024-12-31");
        old.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
        let mut deleted = visit("2025-02-01");
        deleted.self_inspection.set(ChecklistItem::Detection, Compliance::Compliant, "");
        deleted.deleted = true;
        let s = table1_status(&enterprise(), &[old, deleted], 2025);
        assert!(!s.declared && !s.detection_done);
    }

    #[test]
    fn training_columns_need_authority_and_attendance() {
        let mut v = visit("2025-04-01");
        v.training.sessions.insert("a".into(), session(TrainingAudience::Principal, true, 1));
        v.training.sessions.insert("b".into(), session(TrainingAudience::Manager, false, 3));
        v.training.sessions.insert("c".into(), session(TrainingAudience::Workers, true, 0));
        let s = table1_status(&enterprise(), &[v.clone()], 2025);
        assert!(s.principal_trained);
        assert!(!s.managers_trained, "not organised by an administrative body");
        assert!(!s.workers_trained, "nobody attended");
        v.training.sessions.insert("d".into(), session(TrainingAudience::Workers, true, 25));
        v.training.sessions.get_mut("a").unwrap().deleted = true;
        let s = table1_status(&enterprise(), &[v], 2025);
        assert!(s.workers_trained && !s.principal_trained);
    }

    #[test]
    fn governance_completion() {
        let mut e = enterprise();
        let mut v = visit("2025-06-01");
        let post = |effect| OverLimitPost {
            post: "破碎".into(),
            measured_value: Some(95.0),
            limit: Some(85.0),
            unit: "dB(A)".into(),
            effect,
            ..Default::default()
        };
        v.remediation.posts.insert("p1".into(), post(Some(EffectEvaluation::Qualified)));
        assert!(!table1_status(&e, &[v.clone()], 2025).special_governance_completed, "not enrolled");
        e.special_governance = true;
        let s = table1_status(&e, &[v.clone()], 2025);
        assert!(s.special_governance && s.special_governance_completed);
        v.remediation.posts.insert("p2".into(), post(Some(EffectEvaluation::Improved)));
        assert!(!table1_status(&e, &[v.clone()], 2025).special_governance_completed);
        let mut none = visit("2025-07-01");
        none.remediation.no_over_limit_posts = true;
        assert!(table1_status(&e, &[none], 2025).special_governance_completed);
    }

    #[test]
    fn six_ones_coverage() {
        let mut v = visit("2025-06-01");
        v.self_inspection.set(ChecklistItem::Ppe, Compliance::NotApplicable, "");
        v.training.sessions.insert("t".into(), session(TrainingAudience::Workers, true, 5));
        let missing = missing_six_ones(&[v], 2025);
        assert_eq!(
            missing,
            vec![SixOnes::HazardIdentification, SixOnes::ManagementSystem, SixOnes::Notification, SixOnes::Remediation]
        );
    }

    #[test]
    fn table2_counts_per_county_and_total() {
        let done = Table1Status { declared: true, workers_trained: true, ..Default::default() };
        let none = Table1Status::default();
        let (rows, total) =
            table2([("210102", "和平区", done), ("210103", "沈河区", none), ("210102", "和平区", none)]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].county_name.as_str(), rows[0].assisted, rows[0].declared), ("和平区", 2, 1));
        assert_eq!((rows[1].assisted, rows[1].declared), (1, 0));
        assert_eq!(
            (total.county_name.as_str(), total.assisted, total.declared, total.workers_trained),
            ("合计", 3, 1, 1)
        );
    }
}
