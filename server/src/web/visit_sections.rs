//! The visit page's sections, each with its labels in the page's language: the checklist,
//! the posts and their hazard factors, the management system, notification, training,
//! over-limit posts, the screening counts and the notes. Codes become their vocabulary's
//! labels; deleted items (tombstones) stay visible but are marked as deleted.

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

fn field(label: String, value: String) -> Value {
    context! { label, value }
}

fn row(cells: Vec<String>, deleted: bool) -> Value {
    context! { cells, deleted }
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
pub fn sections(v: &Visit, lang: Lang) -> Vec<Value> {
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
        section("self_inspection", Some(SixOnes::SelfInspection), vec![], Some(self_inspection(v, tr))),
        section(
            "hazard_identification",
            Some(SixOnes::HazardIdentification),
            vec![],
            Some(hazard_identification(v, tr)),
        ),
        section("management_system", Some(SixOnes::ManagementSystem), management_system(v, tr), None),
        section("notification", Some(SixOnes::Notification), vec![], Some(notification(v, tr))),
        section("training", Some(SixOnes::Training), vec![], Some(training(v, tr))),
        section("remediation", Some(SixOnes::Remediation), remediation_fields(v, tr), Some(remediation(v, tr))),
        section("chronic_screening", Some(SixOnes::ChronicScreening), chronic_screening(v, tr), None),
        section("notes", None, vec![field(tr.t("备注", "Notes"), tr.text(&v.notes))], None),
    ]
}

fn self_inspection(v: &Visit, tr: Tr) -> Value {
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
            row(vec![name, tr.opt(check.result.as_ref()), tr.text(&check.problem)], false)
        })
        .collect();
    table(vec![tr.t("检查项目", "Item"), tr.t("结果", "Result"), tr.t("发现的问题", "Problem found")], rows)
}

fn hazard_identification(v: &Visit, tr: Tr) -> Value {
    // Deleted posts last.
    let mut posts: Vec<_> = v.hazard_identification.posts.values().collect();
    posts.sort_by_key(|p| p.deleted);
    let rows = posts
        .into_iter()
        .map(|p| {
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

fn management_system(v: &Visit, tr: Tr) -> Vec<Value> {
    let m = &v.management_system;
    vec![
        field(tr.t("职业健康管理制度已建立", "OH management system established"), tr.tri(m.system_established)),
        field(tr.t("应急预案", "Emergency plan"), tr.tri(m.emergency_plan)),
        field(
            tr.t("职业健康档案“五盒一袋”", "OH archive \"five boxes and one bag\""),
            tr.tri(m.archive_five_boxes_one_bag),
        ),
        field(tr.t("说明", "Notes"), tr.text(&m.notes)),
    ]
}

fn notification(v: &Visit, tr: Tr) -> Value {
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
            row(vec![name, tr.opt(check.status.as_ref()), tr.text(&check.suggestion)], false)
        })
        .collect();
    table(vec![tr.t("项目", "Item"), tr.t("情况", "Status"), tr.t("整改建议", "Suggestion")], rows)
}

fn training(v: &Visit, tr: Tr) -> Value {
    let mut sessions: Vec<_> = v.training.sessions.values().collect();
    sessions.sort_by(|a, b| (a.deleted, &a.date).cmp(&(b.deleted, &b.date)));
    let rows = sessions
        .into_iter()
        .map(|s| {
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

fn remediation_fields(v: &Visit, tr: Tr) -> Vec<Value> {
    if v.remediation.no_over_limit_posts {
        vec![field(tr.t("经检查无超标岗位", "No post over limit"), tr.yes_no(true))]
    } else {
        vec![]
    }
}

fn remediation(v: &Visit, tr: Tr) -> Value {
    let mut posts: Vec<_> = v.remediation.posts.values().collect();
    posts.sort_by_key(|p| p.deleted);
    let rows = posts
        .into_iter()
        .map(|p| {
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

fn chronic_screening(v: &Visit, tr: Tr) -> Vec<Value> {
    let c = &v.chronic_screening;
    vec![
        field(tr.t("企业同意筛查", "Enterprise consented"), tr.yes_no(c.consent)),
        field(tr.t("筛查人数", "Workers screened"), c.screened.to_string()),
        field(tr.t("血压异常人数", "Abnormal blood pressure"), c.hypertension_abnormal.to_string()),
        field(tr.t("血糖异常人数", "Abnormal blood glucose"), c.diabetes_abnormal.to_string()),
        field(tr.t("随访人次", "Follow-up visits"), c.follow_ups.to_string()),
    ]
}
