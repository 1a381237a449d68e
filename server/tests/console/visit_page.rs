//! The visit page shows every section with its labels, Chinese first and English with
//! `?lang=en`: no raw codes, deleted items marked.

use axum::http::StatusCode;
use ohassist_core::model::*;

use crate::city;
use crate::common::Record;
use crate::{text, Browser};

/// A visit that records every section, with a deleted post, factor and training session.
fn full_visit(enterprise: &city::Expected) -> Visit {
    let mut v = Visit {
        enterprise_id: enterprise.code.clone(),
        county_code: enterprise.county_code.into(),
        visit_date: "2025-05-20".into(),
        inspectors: [("insp".to_string(), "检查员".to_string())].into(),
        notes: "下月复查噪声岗位".into(),
        ..Default::default()
    };
    v.review.state = ReviewState::Submitted;
    v.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
    v.self_inspection.set(ChecklistItem::Detection, Compliance::NotCompliant, "检测报告已过期");
    let factor = |category: HazardCategory, name: &str, deleted: bool| HazardFactor {
        category: Some(category),
        name: name.into(),
        deleted,
    };
    v.hazard_identification.posts.insert(
        new_item_id(),
        Post {
            workplace: "破碎车间".into(),
            name: "破碎工".into(),
            exposed_workers: 6,
            factors: [
                ("f1".to_string(), factor(HazardCategory::Dust, "矽尘", false)),
                ("f2".to_string(), factor(HazardCategory::Physical, "噪声", false)),
                ("f3".to_string(), factor(HazardCategory::Chemical, "甲苯", true)),
            ]
            .into(),
            health_examination_done: Some(true),
            ..Default::default()
        },
    );
    v.hazard_identification.posts.insert(
        new_item_id(),
        Post { name: "旧岗位甲".into(), exposed_workers: 1, deleted: true, ..Default::default() },
    );
    v.management_system.system_established = Some(true);
    v.management_system.emergency_plan = Some(false);
    v.notification.items.insert(
        NotificationItem::NoticeBoard.code().into(),
        NotificationCheck { status: Some(Compliance::Compliant), suggestion: String::new() },
    );
    v.notification.items.insert(
        NotificationItem::WarningSign.code().into(),
        NotificationCheck { status: Some(Compliance::NotCompliant), suggestion: "补设警示标识".into() },
    );
    v.training.sessions.insert(
        new_item_id(),
        TrainingSession {
            date: "2025-05-20".into(),
            audience: Some(TrainingAudience::Principal),
            attendees: 3,
            mode: Some(TrainingMode::OnSite),
            organised_by_authority: true,
            topic: "职业病防治法".into(),
            deleted: false,
        },
    );
    v.remediation.posts.insert(
        new_item_id(),
        OverLimitPost {
            post: "球磨工".into(),
            factor: "噪声".into(),
            measured_value: Some(92.5),
            limit: Some(85.0),
            unit: "dB(A)".into(),
            suggestion: "加装隔声罩".into(),
            effect: Some(EffectEvaluation::Improved),
            ..Default::default()
        },
    );
    v.chronic_screening =
        ChronicScreening { consent: true, screened: 40, hypertension_abnormal: 5, diabetes_abnormal: 2, follow_ups: 7 };
    v
}

#[tokio::test]
async fn the_visit_page_shows_every_section_with_labels_in_both_languages() {
    let c = city::build().await;
    let enterprise = &c.expected[0];
    let id = new_item_id();
    let mut record = Record::new(RecordKind::Visit, &id);
    let change = record.write(&full_visit(enterprise));
    assert_eq!(c.f.push(&c.inspector, &[change]).await.status, StatusCode::OK);

    let b = Browser::login(&c.f, "city").await;
    let reply = b.get(&c.f, &format!("/visits/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    let zh = text(&reply);
    for want in [
        // self-inspection
        "职业病危害项目申报",
        "职业病危害因素检测",
        "符合",
        "不符合",
        "检测报告已过期",
        // hazard identification
        "破碎工",
        "破碎车间",
        "粉尘：矽尘",
        "物理因素：噪声",
        "旧岗位甲",
        "已删除",
        // management system: 是 / 否 / 未填
        "职业健康管理制度已建立",
        "<dd>是</dd>",
        "<dd>否</dd>",
        "<dd>未填</dd>",
        // notification
        "告知栏",
        "警示标识",
        "补设警示标识",
        // training
        "主要负责人",
        "现场",
        "是否行政部门组织",
        "职业病防治法",
        // remediation
        "球磨工",
        "92.5 dB(A)",
        "85 dB(A)",
        "有改善，仍超标",
        // screening, notes, review
        "血压异常人数",
        "<dd>40</dd>",
        "下月复查噪声岗位",
        "已提交",
    ] {
        assert!(zh.contains(want), "{want} missing from the visit page");
    }
    assert!(!zh.contains("甲苯"), "a deleted hazard factor is hidden");
    for code in ["not_compliant", "compliant<", "on_site", "principal", "notice_board", "\"dust\"", "improved"] {
        assert!(!zh.contains(code), "raw code {code} on the page");
    }

    let en = text(&b.get(&c.f, &format!("/visits/{id}?lang=en")).await);
    for want in [
        "Hazard project declaration",
        "Compliant",
        "Not compliant",
        "Dust：矽尘",
        "Physical：噪声",
        "Notice board",
        "Principal",
        "On site",
        "Organised by an authority",
        "92.5 dB(A)",
        "Improved, still over limit",
        "Abnormal blood pressure",
        "not filled in",
        "deleted",
        "Submitted",
    ] {
        assert!(en.contains(want), "{want} missing from the English visit page");
    }
    for zh_label in ["职业病危害项目申报", "不符合", "主要负责人", "有改善，仍超标", "未填"] {
        assert!(!en.contains(zh_label), "{zh_label} on the English page");
    }
}
