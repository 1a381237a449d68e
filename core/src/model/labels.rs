//! What a field of a record is called, for people: a document path such as
//! `hazard_identification.posts.<id>.exposed_workers` becomes
//! `危害因素辨识 › 破碎岗位 › 接触人数` (`Hazard identification › 破碎岗位 › Exposed workers`):
//! the section, the item (named by the record itself: the post's name, the checklist item's
//! label, the session's date and audience) and the field. Used for conflicts and for the
//! changes made after signing, on the phone and in the console alike. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{ChecklistItem, Label, NotificationItem, RecordKind, SixOnes, TrainingAudience};

/// A field's name in both languages, as crumbs joined by ` › `.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldLabel {
    pub zh: String,
    pub en: String,
}

/// Separator between the crumbs of a label.
pub const SEPARATOR: &str = " › ";

/// A field's pattern (`*` stands for an item key), its Chinese and its English name.
type Field = (&'static str, &'static str, &'static str);

const VISIT_FIELDS: &[Field] = &[
    ("visit_date", "走访日期", "Visit date"),
    ("county_code", "县区", "County"),
    ("enterprise_id", "企业", "Enterprise"),
    ("inspectors.*", "检查员", "Inspector"),
    ("notes", "备注", "Notes"),
    ("deleted", "已删除", "Deleted"),
    ("self_inspection.items.*.result", "结果", "Result"),
    ("self_inspection.items.*.problem", "发现的问题", "Problem found"),
    ("hazard_identification.posts.*.name", "岗位名称", "Post name"),
    ("hazard_identification.posts.*.workplace", "工作场所", "Workplace"),
    ("hazard_identification.posts.*.exposed_workers", "接触人数", "Exposed workers"),
    ("hazard_identification.posts.*.detection_result", "检测结果", "Detection result"),
    ("hazard_identification.posts.*.health_examination_done", "是否开展职业健康检查", "Health examinations done"),
    ("hazard_identification.posts.*.deleted", "已删除", "Deleted"),
    ("hazard_identification.posts.*.factors.*.category", "类别", "Category"),
    ("hazard_identification.posts.*.factors.*.name", "名称", "Name"),
    ("hazard_identification.posts.*.factors.*.deleted", "已删除", "Deleted"),
    ("management_system.system_established", "职业健康管理制度已建立", "OH management system established"),
    ("management_system.emergency_plan", "应急预案", "Emergency plan"),
    ("management_system.archive_five_boxes_one_bag", "职业健康档案“五盒一袋”", "OH archive \"five boxes and one bag\""),
    ("management_system.notes", "说明", "Notes"),
    ("notification.items.*.status", "情况", "Status"),
    ("notification.items.*.suggestion", "整改建议", "Suggestion"),
    ("training.sessions.*.date", "日期", "Date"),
    ("training.sessions.*.audience", "培训对象", "Audience"),
    ("training.sessions.*.attendees", "人数", "Attendees"),
    ("training.sessions.*.mode", "方式", "Mode"),
    ("training.sessions.*.organised_by_authority", "是否行政部门组织", "Organised by an authority"),
    ("training.sessions.*.topic", "主题", "Topic"),
    ("training.sessions.*.deleted", "已删除", "Deleted"),
    ("remediation.no_over_limit_posts", "经检查无超标岗位", "No post over limit"),
    ("remediation.posts.*.post", "岗位", "Post"),
    ("remediation.posts.*.factor", "危害因素", "Hazard factor"),
    ("remediation.posts.*.measured_value", "检测值", "Measured"),
    ("remediation.posts.*.limit", "限值", "Limit"),
    ("remediation.posts.*.unit", "单位", "Unit"),
    ("remediation.posts.*.suggestion", "整改建议", "Suggestion"),
    ("remediation.posts.*.rectification_plan", "整改方案", "Rectification plan"),
    ("remediation.posts.*.guidance", "整改指导", "Guidance"),
    ("remediation.posts.*.effect", "治理效果", "Effect"),
    ("remediation.posts.*.deleted", "已删除", "Deleted"),
    ("chronic_screening.consent", "企业同意筛查", "Enterprise consented"),
    ("chronic_screening.screened", "筛查人数", "Workers screened"),
    ("chronic_screening.hypertension_abnormal", "血压异常人数", "Abnormal blood pressure"),
    ("chronic_screening.diabetes_abnormal", "血糖异常人数", "Abnormal blood glucose"),
    ("chronic_screening.follow_ups", "随访人次", "Follow-up visits"),
    ("review.state", "审核状态", "Review state"),
    ("review.comment", "审核意见", "Review comment"),
    ("location.latitude", "纬度", "Latitude"),
    ("location.longitude", "经度", "Longitude"),
    ("location.accuracy_m", "精度", "Accuracy"),
    ("location.captured_at", "采集时间", "Captured at"),
    ("attachments.*.caption", "说明", "Caption"),
    ("attachments.*.deleted", "已删除", "Deleted"),
    ("signature.signer_name", "签名人", "Signer"),
    ("signature.signed_at", "签名时间", "Signed at"),
];

const ENTERPRISE_FIELDS: &[Field] = &[
    ("name", "企业名称", "Name"),
    ("county.code", "县区代码", "County code"),
    ("county.name", "企业所在县区", "County"),
    ("industry", "行业类别", "Industry"),
    ("size", "企业规模", "Size"),
    ("address", "地址", "Address"),
    ("contact.person", "联系人", "Contact person"),
    ("contact.phone", "联系电话", "Contact phone"),
    ("city_level_target", "是否为市级帮扶对象", "City-level target"),
    ("special_governance", "是否纳入专项治理", "Special governance"),
    ("has_occupational_disease", "存在职业病或疑似职业病", "Occupational disease or suspected cases"),
    ("in_surveillance_scope", "纳入监测范围", "Inside the surveillance scope"),
    ("assistance_years.*", "帮扶年度", "Assistance year"),
    ("location.latitude", "登记位置纬度", "Registered latitude"),
    ("location.longitude", "登记位置经度", "Registered longitude"),
    ("deleted", "已删除", "Deleted"),
];

/// Sections of a visit that are not one of the six ones.
const VISIT_SECTIONS: &[Field] = &[
    ("review", "审核", "Review"),
    ("location", "位置", "Location"),
    ("attachments", "附件", "Attachments"),
    ("signature", "签名", "Signature"),
    ("inspectors", "检查员", "Inspectors"),
];

fn matches(pattern: &str, path: &[String]) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

fn text<'a>(record: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut v = record;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The name of the item `key` under `collection` of a visit (the crumb between section and
/// field), in both languages.
fn visit_item(record: &Json, collection: &[&str], key: &str) -> (String, String) {
    let mut item: Vec<&str> = collection.to_vec();
    item.push(key);
    let field = |f: &str| {
        let mut p = item.clone();
        p.push(f);
        text(record, &p).map(str::to_string)
    };
    let same = |s: String| (s.clone(), s);
    match collection {
        ["self_inspection", "items"] => match ChecklistItem::from_code(key) {
            Some(i) => (i.label_zh().into(), i.label_en().into()),
            None => same(key.to_string()),
        },
        ["notification", "items"] => match NotificationItem::from_code(key) {
            Some(i) => (i.label_zh().into(), i.label_en().into()),
            None => same(key.to_string()),
        },
        ["hazard_identification", "posts"] => {
            field("name").map(same).unwrap_or_else(|| ("（未命名岗位）".into(), "(unnamed post)".into()))
        }
        ["remediation", "posts"] => {
            field("post").map(same).unwrap_or_else(|| ("（未命名岗位）".into(), "(unnamed post)".into()))
        }
        [.., "factors"] => field("name").map(same).unwrap_or_else(|| ("危害因素".into(), "hazard factor".into())),
        ["training", "sessions"] => {
            let audience = field("audience").and_then(|a| TrainingAudience::from_code(&a));
            let date = field("date").unwrap_or_default();
            let zh = [date.as_str(), audience.map_or("", |a| a.label_zh())].join(" ");
            let en = [date.as_str(), audience.map_or("", |a| a.label_en())].join(" ");
            let (zh, en) = (zh.trim().to_string(), en.trim().to_string());
            if zh.is_empty() {
                ("培训".into(), "training".into())
            } else {
                (zh, en)
            }
        }
        ["attachments"] => field("caption").map(same).unwrap_or_else(|| {
            (format!("附件 {}", &key[..key.len().min(8)]), format!("attachment {}", &key[..key.len().min(8)]))
        }),
        ["inspectors"] => record
            .get("inspectors")
            .and_then(|i| i.get(key))
            .and_then(Json::as_str)
            .map(|s| same(s.to_string()))
            .unwrap_or_else(|| same(key.to_string())),
        _ => same(key.to_string()),
    }
}

/// The label of `path` in `record` (the record's JSON, for the names of its items). A path
/// this version does not know is shown as it is, after any section it recognises.
pub fn field_label(kind: RecordKind, record: &Json, path: &[String]) -> FieldLabel {
    type Section = fn(&str) -> Option<(String, String)>;
    let (fields, section_of): (&[Field], Section) = match kind {
        RecordKind::Visit => (VISIT_FIELDS, |s| {
            SixOnes::from_code(s).map(|x| (x.label_zh().to_string(), x.label_en().to_string())).or_else(|| {
                VISIT_SECTIONS.iter().find(|(c, _, _)| *c == s).map(|(_, z, e)| (z.to_string(), e.to_string()))
            })
        }),
        RecordKind::Enterprise => (ENTERPRISE_FIELDS, |_| None),
    };
    let mut zh: Vec<String> = Vec::new();
    let mut en: Vec<String> = Vec::new();
    let known = fields.iter().find(|(p, _, _)| matches(p, path));
    if path.len() > 1 {
        if let Some((z, e)) = section_of(&path[0]) {
            zh.push(z);
            en.push(e);
        }
    }
    match known {
        Some((pattern, z, e)) => {
            let parts: Vec<&str> = pattern.split('.').collect();
            for (i, p) in parts.iter().enumerate() {
                // An item key in the middle names the item; a key at the end is the field.
                if *p == "*" && i + 1 < parts.len() {
                    let collection: Vec<&str> = path[..i].iter().map(String::as_str).collect();
                    let (iz, ie) = match kind {
                        RecordKind::Visit => visit_item(record, &collection, &path[i]),
                        RecordKind::Enterprise => (path[i].clone(), path[i].clone()),
                    };
                    zh.push(iz);
                    en.push(ie);
                }
            }
            let last_key = parts.last() == Some(&"*");
            match (kind, last_key) {
                (RecordKind::Visit, true) => {
                    let collection: Vec<&str> = path[..path.len() - 1].iter().map(String::as_str).collect();
                    // `inspectors.<id>`: the section says what it is, the item who.
                    let (iz, ie) = visit_item(record, &collection, &path[path.len() - 1]);
                    zh.push(iz);
                    en.push(ie);
                }
                (RecordKind::Enterprise, true) => {
                    zh.push(format!("{z} {}", path[path.len() - 1]));
                    en.push(format!("{e} {}", path[path.len() - 1]));
                }
                _ => {
                    zh.push(z.to_string());
                    en.push(e.to_string());
                }
            }
        }
        None => {
            let rest = if zh.is_empty() { path } else { &path[1..] };
            zh.push(rest.join("."));
            en.push(rest.join("."));
        }
    }
    FieldLabel { zh: zh.join(SEPARATOR), en: en.join(SEPARATOR) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn visit_paths_read_as_section_item_and_field() {
        let record = json!({
            "hazard_identification": {"posts": {"4e5d": {"name": "破碎岗位", "factors": {"f1": {"name": "矽尘"}}}}},
            "training": {"sessions": {"s1": {"date": "2025-06-01", "audience": "workers"}}},
        });
        let l = field_label(RecordKind::Visit, &record, &p("hazard_identification.posts.4e5d.exposed_workers"));
        assert_eq!(l.zh, "危害因素辨识 › 破碎岗位 › 接触人数");
        assert_eq!(l.en, "Hazard identification › 破碎岗位 › Exposed workers");
        let l = field_label(RecordKind::Visit, &record, &p("hazard_identification.posts.4e5d.factors.f1.category"));
        assert_eq!(l.zh, "危害因素辨识 › 破碎岗位 › 矽尘 › 类别");
        let l = field_label(RecordKind::Visit, &record, &p("self_inspection.items.declaration.result"));
        assert_eq!(l.zh, "管理自查 › 职业病危害项目申报 › 结果");
        let l = field_label(RecordKind::Visit, &record, &p("training.sessions.s1.attendees"));
        assert_eq!(
            (l.zh.as_str(), l.en.as_str()),
            ("职业健康培训 › 2025-06-01 劳动者 › 人数", "Training › 2025-06-01 Workers › Attendees")
        );
        assert_eq!(field_label(RecordKind::Visit, &record, &p("notes")).zh, "备注");
        assert_eq!(
            field_label(RecordKind::Visit, &record, &p("management_system.emergency_plan")).zh,
            "管理制度 › 应急预案"
        );
        let unnamed = field_label(RecordKind::Visit, &json!({}), &p("remediation.posts.x.effect"));
        assert_eq!(unnamed.zh, "超标岗位治理 › （未命名岗位） › 治理效果");
        // Unknown to this version: shown as it is, after the section.
        assert_eq!(
            field_label(RecordKind::Visit, &record, &p("training.future_field")).zh,
            "职业健康培训 › future_field"
        );
    }

    #[test]
    fn enterprise_paths() {
        let l = field_label(RecordKind::Enterprise, &json!({}), &p("contact.phone"));
        assert_eq!((l.zh.as_str(), l.en.as_str()), ("联系电话", "Contact phone"));
        assert_eq!(field_label(RecordKind::Enterprise, &json!({}), &p("assistance_years.2025")).zh, "帮扶年度 2025");
    }
}
