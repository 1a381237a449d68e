//! Synthetic records for the demo (`ohassist demo`), the tests and the benchmarks: valid
//! credit codes registered in a county, enterprises with plausible names, and a year of
//! visits that cover the six ones in a pattern decided by the enterprise's serial number.
//!
//! Deterministic for a serial (only the item ids of maps are random), no I/O. Every record
//! made here passes `validate`, so whoever stores it goes through the real write path.

// `serial % n == 0` reads as the pattern it is; is_multiple_of is newer than the MSRV.
#![allow(clippy::manual_is_multiple_of)]

use time::{Date, Duration};

use crate::model::*;

/// A valid credit code registered in `county` (characters 3–8), distinct per `serial`
/// (at most 9 digits), the check character computed.
pub fn credit_code(county: &str, serial: u64) -> String {
    let first17 = format!("91{county}{serial:09}");
    let check = crate::credit_code::check_character(&first17).expect("digits are in the alphabet");
    format!("{first17}{check}")
}

const WORDS: [&str; 16] = [
    "宏达", "鑫源", "恒通", "华兴", "金诚", "永盛", "德润", "广瑞", "顺发", "新兴", "兴隆", "瑞丰", "天成", "亿嘉",
    "东方", "北辰",
];
const ROADS: [&str; 6] = ["建设路", "工业街", "兴华大街", "长江街", "北海街", "创新路"];
const PEOPLE: [&str; 8] = ["王建国", "李秀英", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "孙丽"];

/// The place part of a unit's name: 和平区 → 和平, 苏家屯区 → 苏家屯, 沈北新区 → 沈北.
fn place(unit_name: &str) -> String {
    let stem = ["新区", "区", "县", "市"].iter().find_map(|s| unit_name.strip_suffix(s)).unwrap_or(unit_name);
    let chars: Vec<char> = stem.chars().collect();
    if chars.len() > 3 {
        chars[..2].iter().collect()
    } else {
        stem.to_string()
    }
}

fn trade(industry: Industry, variant: u64) -> &'static str {
    let names: &[&str] = match industry {
        Industry::Mining => &["矿业", "石材"],
        Industry::BuildingMaterials => &["建材", "水泥制品"],
        Industry::Metallurgy => &["冶金", "铸造"],
        Industry::Chemical => &["化工", "涂料"],
        Industry::Other => &["机械", "木业", "印刷"],
    };
    names[variant as usize % names.len()]
}

/// An enterprise of `county` on the assistance list of `year`. The serial decides its
/// industry, size, name and flags (special governance every 6th, city-level target every
/// 9th, inside the surveillance scope every 10th).
pub fn enterprise(county: &County, serial: u64, year: i32) -> Enterprise {
    let industry = Industry::ALL[serial as usize % Industry::ALL.len()];
    let word = WORDS[(serial / 5) as usize % WORDS.len()];
    let name = format!("{}{word}{}有限公司", place(&county.name), trade(industry, serial / 80));
    let mut e = Enterprise {
        credit_code: credit_code(&county.code, serial),
        name,
        county: county.clone(),
        industry: Some(industry),
        size: Some(SizeClass::ALL[serial as usize % SizeClass::ALL.len()]),
        address: format!("{}{}{}号", county.name, ROADS[serial as usize % ROADS.len()], 10 + serial % 190),
        contact: Contact {
            person: PEOPLE[serial as usize % PEOPLE.len()].to_string(),
            phone: format!("139{:08}", (serial * 7_919 + 1_234) % 100_000_000),
        },
        city_level_target: serial % 9 == 0,
        special_governance: serial % 6 == 0,
        has_occupational_disease: serial % 13 == 0,
        in_surveillance_scope: serial % 10 == 7,
        ..Default::default()
    };
    e.add_year(year);
    e
}

/// A workplace, its post and two hazard factors present there.
type PostSketch = (&'static str, &'static str, [(HazardCategory, &'static str); 2]);

/// The posts and hazard factors typical of an industry.
fn posts(industry: Industry) -> [PostSketch; 2] {
    use HazardCategory::*;
    match industry {
        Industry::Mining => [
            ("采场", "凿岩", [(Dust, "矽尘"), (Physical, "噪声")]),
            ("破碎车间", "破碎", [(Dust, "矽尘"), (Physical, "噪声")]),
        ],
        Industry::BuildingMaterials => [
            ("粉磨车间", "粉磨", [(Dust, "水泥粉尘"), (Physical, "噪声")]),
            ("包装车间", "包装", [(Dust, "水泥粉尘"), (Physical, "高温")]),
        ],
        Industry::Metallurgy => [
            ("熔炼车间", "熔炼", [(Physical, "高温"), (Chemical, "一氧化碳")]),
            ("精整车间", "打磨", [(Dust, "金属粉尘"), (Physical, "噪声")]),
        ],
        Industry::Chemical => [
            ("合成车间", "反应釜操作", [(Chemical, "苯"), (Chemical, "甲苯")]),
            ("灌装车间", "灌装", [(Chemical, "氨"), (Physical, "噪声")]),
        ],
        Industry::Other => [
            ("涂装车间", "喷漆", [(Chemical, "二甲苯"), (Dust, "其他粉尘")]),
            ("机加工车间", "机加工", [(Physical, "噪声"), (Chemical, "切削液")]),
        ],
    }
}

fn training(date: &str, audience: TrainingAudience, attendees: i64, by_authority: bool) -> TrainingSession {
    TrainingSession {
        date: date.to_string(),
        audience: Some(audience),
        attendees,
        mode: Some(if attendees > 20 { TrainingMode::OnSite } else { TrainingMode::Online }),
        organised_by_authority: by_authority,
        topic: "职业病防治法及岗位防护要点".to_string(),
        deleted: false,
    }
}

/// What the visits of an enterprise establish, by its serial: most enterprises have
/// declared, had detection and examinations and sent people to training, not all.
pub struct Coverage {
    pub declared: bool,
    pub detection: bool,
    pub exam: bool,
    pub principal: bool,
    pub managers: bool,
    pub workers: bool,
}

pub fn coverage(serial: u64) -> Coverage {
    Coverage {
        declared: serial % 5 != 4,
        detection: serial % 4 != 3,
        exam: serial % 3 != 2,
        principal: serial % 2 == 0,
        managers: serial % 3 != 1,
        workers: serial % 4 != 2,
    }
}

/// Two to four visits of `e` in `year`, dated between 5 January and `last_day`, spread out
/// (the serial shifts them): the first a self-inspection and hazard identification, the
/// next the management system, notification and training, a third remediation of the
/// over-limit posts (special governance) and screening, a fourth a follow-up. What they
/// establish is [`coverage`]`(serial)`. `inspector` is `(user id, display name)`.
pub fn visits(e: &Enterprise, serial: u64, year: i32, last_day: Date, inspector: (&str, &str)) -> Vec<Visit> {
    let n = 2 + (serial % 3) as i64;
    let first = Date::from_ordinal_date(year, 5).expect("5 January exists");
    let span = (last_day - first).whole_days().max(n);
    let shift = (serial % 11) as i64;
    let day = |k: i64| {
        let d = first + Duration::days(((k + 1) * span / (n + 1) + shift).min(span));
        let f = time::macros::format_description!("[year]-[month]-[day]");
        d.format(&f).expect("a date formats")
    };
    let cov = coverage(serial);
    let answer = |b: bool| if b { Compliance::Compliant } else { Compliance::NotCompliant };
    let industry = e.industry.unwrap_or(Industry::Other);
    let base = |k: i64| Visit {
        enterprise_id: e.credit_code.clone(),
        county_code: e.county.code.clone(),
        visit_date: day(k),
        inspectors: [(inspector.0.to_string(), inspector.1.to_string())].into(),
        ..Default::default()
    };

    let mut first_visit = base(0);
    let si = &mut first_visit.self_inspection;
    si.set(ChecklistItem::ThreeSimultaneities, answer(serial % 7 != 3), "");
    si.set(ChecklistItem::Declaration, answer(cov.declared), if cov.declared { "" } else { "未在系统中申报" });
    si.set(ChecklistItem::Detection, answer(cov.detection), if cov.detection { "" } else { "近一年未开展检测" });
    si.set(ChecklistItem::HealthExamination, answer(cov.exam), if cov.exam { "" } else { "部分岗位未体检" });
    si.set(ChecklistItem::Ppe, answer(serial % 5 != 1), "");
    si.set(ChecklistItem::HazardNotification, answer(serial % 6 != 5), "");
    for (i, (workplace, post, factors)) in posts(industry).into_iter().enumerate() {
        first_visit.hazard_identification.posts.insert(
            new_item_id(),
            Post {
                workplace: workplace.to_string(),
                name: post.to_string(),
                exposed_workers: 3 + ((serial + i as u64 * 5) % 18) as i64,
                factors: factors
                    .iter()
                    .map(|(c, name)| {
                        (new_item_id(), HazardFactor { category: Some(*c), name: name.to_string(), deleted: false })
                    })
                    .collect(),
                detection_result: if cov.detection { "检测结果符合要求".to_string() } else { String::new() },
                health_examination_done: Some(cov.exam),
                deleted: false,
            },
        );
    }
    first_visit.notes = "首次帮扶：完成管理自查和危害因素辨识。".to_string();

    let mut second = base(1);
    second.management_system.system_established = Some(serial % 4 != 1);
    second.management_system.emergency_plan = Some(serial % 3 != 0);
    second.management_system.archive_five_boxes_one_bag = Some(serial % 2 == 0);
    for (i, item) in NotificationItem::ALL.iter().enumerate() {
        let ok = (serial + i as u64) % 4 != 0;
        second.notification.items.insert(
            item.code().to_string(),
            NotificationCheck {
                status: Some(answer(ok)),
                suggestion: if ok { String::new() } else { format!("补充设置{}", item.label_zh()) },
            },
        );
    }
    let date = second.visit_date.clone();
    let sessions = &mut second.training.sessions;
    if cov.principal {
        sessions.insert(new_item_id(), training(&date, TrainingAudience::Principal, 1, true));
    }
    if cov.managers {
        sessions.insert(new_item_id(), training(&date, TrainingAudience::Manager, 2, true));
    } else if serial % 2 == 1 {
        // Training the enterprise organised itself does not count for the tables.
        sessions.insert(new_item_id(), training(&date, TrainingAudience::Manager, 2, false));
    }
    second.notes = "送达管理制度模板和应急预案范本，现场指导告知栏设置。".to_string();

    let mut third = base(2.min(n - 1));
    if cov.workers {
        let date = third.visit_date.clone();
        third
            .training
            .sessions
            .insert(new_item_id(), training(&date, TrainingAudience::Workers, 12 + (serial % 30) as i64, true));
    }
    if e.special_governance {
        let effect = if serial % 12 == 0 { EffectEvaluation::Qualified } else { EffectEvaluation::Improved };
        third.remediation.posts.insert(
            new_item_id(),
            OverLimitPost {
                post: posts(industry)[1].1.to_string(),
                factor: "噪声".to_string(),
                measured_value: Some(88.0 + (serial % 6) as f64),
                limit: Some(85.0),
                unit: "dB(A)".to_string(),
                suggestion: "加装隔声罩，配发耳塞".to_string(),
                rectification_plan: "三个月内完成设备降噪改造".to_string(),
                guidance: "现场指导隔声罩选型".to_string(),
                effect: Some(effect),
                deleted: false,
            },
        );
    } else {
        third.remediation.no_over_limit_posts = true;
    }
    if serial % 5 == 0 {
        let screened = 20 + (serial % 40) as i64;
        third.chronic_screening = ChronicScreening {
            consent: true,
            screened,
            hypertension_abnormal: screened / 6,
            diabetes_abnormal: screened / 12,
            follow_ups: screened / 8,
        };
    }
    third.notes = "开展劳动者培训，指导超标岗位整改。".to_string();

    let mut out = vec![first_visit];
    if n == 2 {
        // Two visits: the second does all of the later work.
        let mut merged = second;
        merged.training.sessions.extend(third.training.sessions);
        merged.remediation = third.remediation;
        merged.chronic_screening = third.chronic_screening;
        out.push(merged);
    } else {
        out.push(second);
        out.push(third);
    }
    if n == 4 {
        let mut follow_up = base(3);
        follow_up.self_inspection.set(ChecklistItem::Declaration, answer(cov.declared), "");
        follow_up.notes = "复查：整改措施已落实。".to_string();
        out.push(follow_up);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_records_are_valid_and_say_what_their_coverage_says() {
        let county = County { code: "210102".into(), name: "和平区".into() };
        let today = Date::from_calendar_date(2025, time::Month::November, 30).unwrap();
        for serial in 0..60 {
            let e = enterprise(&county, serial, 2025);
            crate::validate::enterprise(&e).unwrap();
            assert!(e.name.starts_with("和平") && e.name.ends_with("有限公司"), "{}", e.name);
            let visits = visits(&e, serial, 2025, today, ("u1", "检查员"));
            assert!((2..=4).contains(&visits.len()));
            for v in &visits {
                crate::validate::visit(v, today).unwrap();
                assert!(
                    v.visit_date.as_str() >= "2025-01-05" && v.visit_date.as_str() <= "2025-11-30",
                    "{}",
                    v.visit_date
                );
            }
            let status = crate::status::table1_status(&e, &visits, 2025);
            let cov = coverage(serial);
            assert_eq!(status.declared, cov.declared, "serial {serial}");
            assert_eq!(status.detection_done, cov.detection || e.in_surveillance_scope, "serial {serial}");
            assert_eq!(status.health_examination_done, cov.exam, "serial {serial}");
            assert_eq!(
                (status.principal_trained, status.managers_trained, status.workers_trained),
                (cov.principal, cov.managers, cov.workers),
                "serial {serial}"
            );
        }
        let names: std::collections::HashSet<String> = (0..80).map(|s| enterprise(&county, s, 2025).name).collect();
        assert_eq!(names.len(), 80, "names are distinct within a county");
        assert_eq!(place("苏家屯区"), "苏家屯");
        assert_eq!(place("沈北新区"), "沈北");
        assert_eq!(place("沈阳经济技术开发区"), "沈阳");
        assert_eq!(credit_code("210102", 1), "91210102000000001".to_string() + &credit_code("210102", 1)[17..]);
    }
}
