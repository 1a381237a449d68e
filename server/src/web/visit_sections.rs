//! The visit page's sections, each with its labels in the page's language: the checklist,
//! the posts and their hazard factors, the management system, notification, training,
//! over-limit posts, the screening counts and the notes. Codes become their vocabulary's
//! labels; deleted items (tombstones) stay visible but are marked as deleted. A cell whose
//! field is in conflict carries the anchor of the conflict's form, so the page marks it
//! and links to where it is settled.

use std::collections::HashMap;

use minijinja::{context, Value};
use ohassist_core::model::{ChecklistItem, Label, NotificationItem, SixOnes, Visit};

use super::session::Lang;

/// Labels in one language.
#[derive(Clone, Copy)]
struct Tr {
    en: bool,
}

impl Tr {
    fn t(self, zh: &str, en: &str) -> String {
        if self.en { en } else { zh }.to_string()
    }
    fn label(self, l: &impl Label) -> String {
        if self.en { l.label_en() } else { l.label_zh() }.to_string()
    }
    /// A vocabulary value, or "not filled in".
    fn opt(self, l: Option<&impl Label>) -> String {
        l.map(|l| self.label(l)).unwrap_or_else(|| self.unset())
    }
    fn unset(self) -> String {
        self.t("未填", "not filled in")
    }
    fn yes_no(self, b: bool) -> String {
        if b {
            self.t("是", "yes")
        } else {
            self.t("否", "no")
        }
    }
    /// 是 / 否 / 未填
    fn tri(self, b: Option<bool>) -> String {
        b.map(|b| self.yes_no(b)).unwrap_or_else(|| self.unset())
    }
    fn text(self, s: &str) -> String {
        if s.trim().is_empty() {
            "—".to_string()
        } else {
            s.to_string()
        }
    }
}

/// Conflicted paths (dotted) → the anchor of their form.
#[derive(Clone, Copy)]
pub struct Marks<'a>(pub &'a HashMap<String, String>);

impl Marks<'_> {
    /// The anchor of a conflict at `path` or inside it.
    fn at(self, path: &str) -> Option<String> {
        let inside = format!("{path}.");
        self.0.iter().find(|(p, _)| *p == path || p.starts_with(&inside)).map(|(_, a)| a.clone())
    }

    /// Marks for the columns of an item at `prefix`, one field (or none) per column.
    fn row(self, prefix: &str, columns: &[Option<&str>]) -> Vec<Option<String>> {
        let whole = self.0.get(prefix).cloned();
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(f) => self.at(&format!("{prefix}.{f}")),
                None if i == 0 => whole.clone(),
                None => None,
            })
            .collect()
    }
}

fn field(label: String, value: String, conflict: Option<String>) -> Value {
    context! { label, value, conflict }
}

fn row(cells: Vec<String>, deleted: bool, marks: Vec<Option<String>>) -> Value {
    context! { cells, deleted, marks }
}

fn table(headers: Vec<String>, rows: Vec<Value>) -> Value {
    context! { headers, rows }
}

/// A measured value or limit with its unit: `92 dB(A)`.
fn quantity(x: Option<f64>, unit: &str, tr: Tr) -> String {
    match x {
        Some(x) if unit.trim().is_empty() => format!("{x}"),
        Some(x) => format!("{x} {}", unit.trim()),
        None => tr.unset(),
    }
}

/// The sections of a visit, in the order of the six ones, then screening and notes.
pub fn sections(v: &Visit, lang: Lang, m: Marks<'_>) -> Vec<Value> {
    let tr = Tr { en: lang == Lang::En };
    let section = |key: &str, item: Option<SixOnes>, fields: Vec<Value>, table: Option<Value>| {
        let title = match item {
            Some(i) => tr.label(&i),
            None => tr.t("备注", "Notes"),
        };
        let covered = item.map(|i| v.covers(i));
        context! { key, title, covered, fields, table }
    };
    vec![
        section("self_inspection", Some(SixOnes::SelfInspection), vec![], Some(self_inspection(v, tr, m))),
        section(
            "hazard_identification",
            Some(SixOnes::HazardIdentification),
            vec![],
            Some(hazard_identification(v, tr, m)),
        ),
        section("management_system", Some(SixOnes::ManagementSystem), management_system(v, tr, m), None),
        section("notification", Some(SixOnes::Notification), vec![], Some(notification(v, tr, m))),
        section("training", Some(SixOnes::Training), vec![], Some(training(v, tr, m))),
        section("remediation", Some(SixOnes::Remediation), remediation_fields(v, tr, m), Some(remediation(v, tr, m))),
        section("chronic_screening", Some(SixOnes::ChronicScreening), chronic_screening(v, tr, m), None),
        section("notes", None, vec![field(tr.t("备注", "Notes"), tr.text(&v.notes), m.at("notes"))], None),
    ]
}

fn self_inspection(v: &Visit, tr: Tr, m: Marks<'_>) -> Value {
    let items = &v.self_inspection.items;
    // Known items in checklist order, then any code this version does not know.
    let mut keyed: Vec<(Option<ChecklistItem>, &String)> =
        items.keys().map(|k| (ChecklistItem::from_code(k), k)).collect();
    keyed.sort_by_key(|(item, _)| {
        item.map_or(usize::MAX, |i| ChecklistItem::ALL.iter().position(|x| *x == i).unwrap_or(0))
    });
    let rows = keyed
        .into_iter()
        .map(|(item, code)| {
            let check = &items[code];
            let name = item.map(|i| tr.label(&i)).unwrap_or_else(|| code.clone());
            let marks = m.row(&format!("self_inspection.items.{code}"), &[None, Some("result"), Some("problem")]);
            row(vec![name, tr.opt(check.result.as_ref()), tr.text(&check.problem)], false, marks)
        })
        .collect();
    table(vec![tr.t("检查项目", "Item"), tr.t("结果", "Result"), tr.t("发现的问题", "Problem found")], rows)
}

fn hazard_identification(v: &Visit, tr: Tr, m: Marks<'_>) -> Value {
    // Deleted posts last.
    let mut posts: Vec<_> = v.hazard_identification.posts.iter().collect();
    posts.sort_by_key(|(_, p)| p.deleted);
    let rows = posts
        .into_iter()
        .map(|(id, p)| {
            let factors: Vec<String> = p
                .factors
                .values()
                .filter(|f| !f.deleted)
                .map(|f| {
                    let category = tr.opt(f.category.as_ref());
                    if f.name.trim().is_empty() {
                        category
                    } else {
                        format!("{category}：{}", f.name)
                    }
                })
                .collect();
            let factors = if factors.is_empty() { "—".to_string() } else { factors.join("；") };
            row(
                vec![
                    tr.text(&p.name),
                    tr.text(&p.workplace),
                    p.exposed_workers.to_string(),
                    factors,
                    tr.text(&p.detection_result),
                    tr.tri(p.health_examination_done),
                ],
                p.deleted,
                m.row(
                    &format!("hazard_identification.posts.{id}"),
                    &[
                        Some("name"),
                        Some("workplace"),
                        Some("exposed_workers"),
                        Some("factors"),
                        Some("detection_result"),
                        Some("health_examination_done"),
                    ],
                ),
            )
        })
        .collect();
    table(
        vec![
            tr.t("岗位", "Post"),
            tr.t("工作场所", "Workplace"),
            tr.t("接触人数", "Exposed workers"),
            tr.t("危害因素", "Hazard factors"),
            tr.t("检测结果", "Detection result"),
            tr.t("是否开展职业健康检查", "Health examinations done"),
        ],
        rows,
    )
}

fn management_system(v: &Visit, tr: Tr, marks: Marks<'_>) -> Vec<Value> {
    let m = &v.management_system;
    let at = |f: &str| marks.at(&format!("management_system.{f}"));
    vec![
        field(
            tr.t("职业健康管理制度已建立", "OH management system established"),
            tr.tri(m.system_established),
            at("system_established"),
        ),
        field(tr.t("应急预案", "Emergency plan"), tr.tri(m.emergency_plan), at("emergency_plan")),
        field(
            tr.t("职业健康档案“五盒一袋”", "OH archive \"five boxes and one bag\""),
            tr.tri(m.archive_five_boxes_one_bag),
            at("archive_five_boxes_one_bag"),
        ),
        field(tr.t("说明", "Notes"), tr.text(&m.notes), at("notes")),
    ]
}

fn notification(v: &Visit, tr: Tr, m: Marks<'_>) -> Value {
    let items = &v.notification.items;
    let mut keyed: Vec<(Option<NotificationItem>, &String)> =
        items.keys().map(|k| (NotificationItem::from_code(k), k)).collect();
    keyed.sort_by_key(|(item, _)| {
        item.map_or(usize::MAX, |i| NotificationItem::ALL.iter().position(|x| *x == i).unwrap_or(0))
    });
    let rows = keyed
        .into_iter()
        .map(|(item, code)| {
            let check = &items[code];
            let name = item.map(|i| tr.label(&i)).unwrap_or_else(|| code.clone());
            let marks = m.row(&format!("notification.items.{code}"), &[None, Some("status"), Some("suggestion")]);
            row(vec![name, tr.opt(check.status.as_ref()), tr.text(&check.suggestion)], false, marks)
        })
        .collect();
    table(vec![tr.t("项目", "Item"), tr.t("情况", "Status"), tr.t("整改建议", "Suggestion")], rows)
}

fn training(v: &Visit, tr: Tr, m: Marks<'_>) -> Value {
    let mut sessions: Vec<_> = v.training.sessions.iter().collect();
    sessions.sort_by(|(_, a), (_, b)| (a.deleted, &a.date).cmp(&(b.deleted, &b.date)));
    let rows = sessions
        .into_iter()
        .map(|(id, s)| {
            row(
                vec![
                    tr.text(&s.date),
                    tr.opt(s.audience.as_ref()),
                    s.attendees.to_string(),
                    tr.opt(s.mode.as_ref()),
                    tr.yes_no(s.organised_by_authority),
                    tr.text(&s.topic),
                ],
                s.deleted,
                m.row(
                    &format!("training.sessions.{id}"),
                    &[
                        Some("date"),
                        Some("audience"),
                        Some("attendees"),
                        Some("mode"),
                        Some("organised_by_authority"),
                        Some("topic"),
                    ],
                ),
            )
        })
        .collect();
    table(
        vec![
            tr.t("日期", "Date"),
            tr.t("培训对象", "Audience"),
            tr.t("人数", "Attendees"),
            tr.t("方式", "Mode"),
            tr.t("是否行政部门组织", "Organised by an authority"),
            tr.t("主题", "Topic"),
        ],
        rows,
    )
}

fn remediation_fields(v: &Visit, tr: Tr, m: Marks<'_>) -> Vec<Value> {
    let conflict = m.at("remediation.no_over_limit_posts");
    if v.remediation.no_over_limit_posts || conflict.is_some() {
        vec![field(
            tr.t("经检查无超标岗位", "No post over limit"),
            tr.yes_no(v.remediation.no_over_limit_posts),
            conflict,
        )]
    } else {
        vec![]
    }
}

fn remediation(v: &Visit, tr: Tr, m: Marks<'_>) -> Value {
    let mut posts: Vec<_> = v.remediation.posts.iter().collect();
    posts.sort_by_key(|(_, p)| p.deleted);
    let rows = posts
        .into_iter()
        .map(|(id, p)| {
            let over = match (p.measured_value, p.limit) {
                (Some(_), Some(_)) => tr.yes_no(p.exceeds_limit()),
                _ => tr.unset(),
            };
            row(
                vec![
                    tr.text(&p.post),
                    tr.text(&p.factor),
                    quantity(p.measured_value, &p.unit, tr),
                    quantity(p.limit, &p.unit, tr),
                    over,
                    tr.text(&p.suggestion),
                    tr.text(&p.rectification_plan),
                    tr.text(&p.guidance),
                    tr.opt(p.effect.as_ref()),
                ],
                p.deleted,
                m.row(
                    &format!("remediation.posts.{id}"),
                    &[
                        Some("post"),
                        Some("factor"),
                        Some("measured_value"),
                        Some("limit"),
                        None,
                        Some("suggestion"),
                        Some("rectification_plan"),
                        Some("guidance"),
                        Some("effect"),
                    ],
                ),
            )
        })
        .collect();
    table(
        vec![
            tr.t("岗位", "Post"),
            tr.t("危害因素", "Hazard factor"),
            tr.t("检测值", "Measured"),
            tr.t("限值", "Limit"),
            tr.t("是否超标", "Over limit"),
            tr.t("整改建议", "Suggestion"),
            tr.t("整改方案", "Rectification plan"),
            tr.t("整改指导", "Guidance"),
            tr.t("治理效果", "Effect"),
        ],
        rows,
    )
}

fn chronic_screening(v: &Visit, tr: Tr, m: Marks<'_>) -> Vec<Value> {
    let c = &v.chronic_screening;
    let at = |f: &str| m.at(&format!("chronic_screening.{f}"));
    vec![
        field(tr.t("企业同意筛查", "Enterprise consented"), tr.yes_no(c.consent), at("consent")),
        field(tr.t("筛查人数", "Workers screened"), c.screened.to_string(), at("screened")),
        field(
            tr.t("血压异常人数", "Abnormal blood pressure"),
            c.hypertension_abnormal.to_string(),
            at("hypertension_abnormal"),
        ),
        field(tr.t("血糖异常人数", "Abnormal blood glucose"), c.diabetes_abnormal.to_string(), at("diabetes_abnormal")),
        field(tr.t("随访人次", "Follow-up visits"), c.follow_ups.to_string(), at("follow_ups")),
    ]
}
