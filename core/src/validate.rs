//! Validation of records before anything is written. Pure: the caller passes today's date.
//!
//! Each function returns the first problem found, as a [`ValidationError`] naming the
//! field by its dotted path.

use time::Date;

use crate::credit_code;
use crate::error::{Reason, ValidationError};
use crate::model::{ChecklistItem, Enterprise, GeoFix, GeoPoint, NotificationItem, SixOnes, Visit};

/// Names, places, short answers.
pub const MAX_SHORT_TEXT: usize = 200;
/// Notes, problems found, plans and suggestions.
pub const MAX_LONG_TEXT: usize = 5_000;
const MIN_YEAR: i64 = 2000;
const MAX_YEAR: i64 = 2100;

type Check = Result<(), ValidationError>;

fn err(field: impl Into<String>, reason: Reason) -> Check {
    Err(ValidationError::new(field, reason))
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Check {
    if required && value.trim().is_empty() {
        return err(field, Reason::Required);
    }
    if value.chars().count() > max {
        return err(field, Reason::TooLong { max });
    }
    Ok(())
}

fn count(field: &str, value: i64) -> Check {
    if value < 0 {
        return err(field, Reason::Negative);
    }
    Ok(())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(value: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, &format).ok()
}

fn date(field: &str, value: &str, today: Date, required: bool) -> Check {
    if value.is_empty() && !required {
        return Ok(());
    }
    let Some(d) = parse_date(value) else {
        return err(field, if value.is_empty() { Reason::Required } else { Reason::InvalidDate });
    };
    if d > today {
        return err(field, Reason::FutureDate);
    }
    Ok(())
}

/// A credit code, which must already be normalised.
pub fn credit_code_field(field: &str, code: &str) -> Check {
    if code.is_empty() {
        return err(field, Reason::Required);
    }
    credit_code::validate(code).map_err(|e| ValidationError::new(field, Reason::CreditCode(e)))
}

pub fn county_code(field: &str, code: &str) -> Check {
    if code.is_empty() {
        return err(field, Reason::Required);
    }
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return err(field, Reason::CountyCode);
    }
    Ok(())
}

/// A SHA-256 as 64 lowercase hex digits.
pub fn sha256_field(field: &str, value: &str) -> Check {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return err(field, Reason::Malformed("expected a SHA-256 as 64 lowercase hex digits".into()));
    }
    Ok(())
}

fn point(field: &str, p: &GeoPoint) -> Check {
    if !p.latitude.is_finite() || !(-90.0..=90.0).contains(&p.latitude) {
        return err(format!("{field}.latitude"), Reason::OutOfRange { min: -90, max: 90 });
    }
    if !p.longitude.is_finite() || !(-180.0..=180.0).contains(&p.longitude) {
        return err(format!("{field}.longitude"), Reason::OutOfRange { min: -180, max: 180 });
    }
    Ok(())
}

fn fix(field: &str, f: &GeoFix, today: Date) -> Check {
    point(field, &GeoPoint { latitude: f.latitude, longitude: f.longitude })?;
    if !f.accuracy_m.is_finite() || f.accuracy_m < 0.0 {
        return err(format!("{field}.accuracy_m"), Reason::Negative);
    }
    timestamp(&format!("{field}.captured_at"), &f.captured_at, today)
}

/// An RFC 3339 time, not after today (empty allowed).
fn timestamp(field: &str, value: &str, today: Date) -> Check {
    if value.is_empty() {
        return Ok(());
    }
    match time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(t) if t.date() > today => err(field, Reason::FutureDate),
        Ok(_) => Ok(()),
        Err(_) => err(field, Reason::Malformed("expected an RFC 3339 time such as 2025-05-20T09:30:00+08:00".into())),
    }
}

pub fn enterprise(e: &Enterprise) -> Check {
    credit_code_field("credit_code", &e.credit_code)?;
    text("name", &e.name, MAX_SHORT_TEXT, true)?;
    county_code("county.code", &e.county.code)?;
    text("county.name", &e.county.name, MAX_SHORT_TEXT, true)?;
    if e.industry.is_none() {
        return err("industry", Reason::Required);
    }
    text("address", &e.address, MAX_SHORT_TEXT, false)?;
    text("contact.person", &e.contact.person, MAX_SHORT_TEXT, false)?;
    text("contact.phone", &e.contact.phone, 50, false)?;
    if let Some(p) = &e.location {
        point("location", p)?;
    }
    for year in e.assistance_years.keys() {
        let field = format!("assistance_years.{year}");
        match year.parse::<i64>() {
            Ok(y) if (MIN_YEAR..=MAX_YEAR).contains(&y) => {}
            Ok(_) => return err(field, Reason::OutOfRange { min: MIN_YEAR, max: MAX_YEAR }),
            Err(_) => return err(field, Reason::UnknownValue { found: year.clone() }),
        }
    }
    Ok(())
}

pub fn visit(v: &Visit, today: Date) -> Check {
    credit_code_field("enterprise_id", &v.enterprise_id)?;
    county_code("county_code", &v.county_code)?;
    date("visit_date", &v.visit_date, today, true)?;
    for (id, name) in &v.inspectors {
        text(&format!("inspectors.{id}"), name, MAX_SHORT_TEXT, false)?;
    }
    for (key, item) in &v.self_inspection.items {
        let field = format!("self_inspection.items.{key}");
        if ChecklistItem::from_code(key).is_none() {
            return err(field, Reason::UnknownValue { found: key.clone() });
        }
        text(&format!("{field}.problem"), &item.problem, MAX_LONG_TEXT, false)?;
    }
    for (id, post) in &v.hazard_identification.posts {
        let field = format!("hazard_identification.posts.{id}");
        text(&format!("{field}.workplace"), &post.workplace, MAX_SHORT_TEXT, false)?;
        text(&format!("{field}.name"), &post.name, MAX_SHORT_TEXT, !post.deleted)?;
        count(&format!("{field}.exposed_workers"), post.exposed_workers)?;
        text(&format!("{field}.detection_result"), &post.detection_result, MAX_LONG_TEXT, false)?;
        for (fid, factor) in &post.factors {
            let field = format!("{field}.factors.{fid}");
            if factor.category.is_none() && !factor.deleted {
                return err(format!("{field}.category"), Reason::Required);
            }
            text(&format!("{field}.name"), &factor.name, MAX_SHORT_TEXT, false)?;
        }
    }
    text("management_system.notes", &v.management_system.notes, MAX_LONG_TEXT, false)?;
    for (key, item) in &v.notification.items {
        let field = format!("notification.items.{key}");
        if NotificationItem::from_code(key).is_none() {
            return err(field, Reason::UnknownValue { found: key.clone() });
        }
        text(&format!("{field}.suggestion"), &item.suggestion, MAX_LONG_TEXT, false)?;
    }
    for (id, s) in &v.training.sessions {
        let field = format!("training.sessions.{id}");
        date(&format!("{field}.date"), &s.date, today, false)?;
        if s.audience.is_none() && !s.deleted {
            return err(format!("{field}.audience"), Reason::Required);
        }
        count(&format!("{field}.attendees"), s.attendees)?;
        text(&format!("{field}.topic"), &s.topic, MAX_SHORT_TEXT, false)?;
    }
    for (id, p) in &v.remediation.posts {
        let field = format!("remediation.posts.{id}");
        text(&format!("{field}.post"), &p.post, MAX_SHORT_TEXT, !p.deleted)?;
        text(&format!("{field}.factor"), &p.factor, MAX_SHORT_TEXT, false)?;
        for (name, value) in [("measured_value", p.measured_value), ("limit", p.limit)] {
            if let Some(x) = value {
                if !x.is_finite() {
                    return err(format!("{field}.{name}"), Reason::UnknownValue { found: x.to_string() });
                }
                if x < 0.0 {
                    return err(format!("{field}.{name}"), Reason::Negative);
                }
            }
        }
        if (p.measured_value.is_some() || p.limit.is_some()) && p.unit.trim().is_empty() {
            return err(format!("{field}.unit"), Reason::MissingUnit);
        }
        text(&format!("{field}.unit"), &p.unit, 20, false)?;
        for (name, value) in
            [("suggestion", &p.suggestion), ("rectification_plan", &p.rectification_plan), ("guidance", &p.guidance)]
        {
            text(&format!("{field}.{name}"), value, MAX_LONG_TEXT, false)?;
        }
    }
    let s = &v.chronic_screening;
    for (name, value) in [
        ("screened", s.screened),
        ("hypertension_abnormal", s.hypertension_abnormal),
        ("diabetes_abnormal", s.diabetes_abnormal),
        ("follow_ups", s.follow_ups),
    ] {
        let field = format!("chronic_screening.{name}");
        count(&field, value)?;
        if value > 0 && !s.consent {
            return err(field, Reason::NotConsented);
        }
        if name != "screened" && value > s.screened {
            return err(field, Reason::Exceeds { of: "chronic_screening.screened".into() });
        }
    }
    text("notes", &v.notes, MAX_LONG_TEXT, false)?;
    text("review.comment", &v.review.comment, MAX_LONG_TEXT, false)?;
    if let Some(f) = &v.location {
        fix("location", f, today)?;
    }
    for (key, a) in &v.attachments {
        let field = format!("attachments.{key}");
        sha256_field(&field, key)?;
        if a.sha256 != *key {
            return err(format!("{field}.sha256"), Reason::Malformed("must equal the attachment's key".into()));
        }
        if a.kind.is_none() {
            return err(format!("{field}.kind"), Reason::Required);
        }
        text(&format!("{field}.media_type"), &a.media_type, 100, true)?;
        count(&format!("{field}.size"), a.size)?;
        text(&format!("{field}.caption"), &a.caption, MAX_SHORT_TEXT, false)?;
        timestamp(&format!("{field}.taken_at"), &a.taken_at, today)?;
        if !a.section.is_empty() && SixOnes::from_code(&a.section).is_none() {
            return err(format!("{field}.section"), Reason::UnknownValue { found: a.section.clone() });
        }
        if let Some(f) = &a.location {
            fix(&format!("{field}.location"), f, today)?;
        }
    }
    if let Some(sig) = &v.signature {
        text("signature.signer_name", &sig.signer_name, MAX_SHORT_TEXT, true)?;
        // A signature without its time proves nothing about what was signed when.
        if sig.signed_at.trim().is_empty() {
            return err("signature.signed_at", Reason::Required);
        }
        timestamp("signature.signed_at", &sig.signed_at, today)?;
        sha256_field("signature.image_sha256", &sig.image_sha256)?;
        if !v.attachments.contains_key(&sig.image_sha256) {
            return err(
                "signature.image_sha256",
                Reason::Malformed("the signature image is not attached to the visit".into()),
            );
        }
    }
    Ok(())
}

/// Decodes a record from JSON, naming the failing field on error (for API bodies and
/// imported files).
pub fn decode<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, ValidationError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let message = inner.to_string();
        let reason = match message.strip_prefix("unknown variant `") {
            Some(rest) => Reason::UnknownValue { found: rest.split('`').next().unwrap_or("").to_string() },
            None => Reason::Malformed(message),
        };
        ValidationError::new(field, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn today() -> Date {
        parse_date("2025-06-30").unwrap()
    }

    fn good_enterprise() -> Enterprise {
        let mut e = Enterprise {
            credit_code: "91350100M000100Y43".into(),
            name: "某某矿业有限公司".into(),
            county: County { code: "350102".into(), name: "鼓楼区".into() },
            industry: Some(Industry::Mining),
            ..Default::default()
        };
        e.add_year(2025);
        e
    }

    fn good_visit() -> Visit {
        Visit {
            enterprise_id: "91350100M000100Y43".into(),
            county_code: "350102".into(),
            visit_date: "2025-06-01".into(),
            ..Default::default()
        }
    }

    fn field_of(r: Check) -> (String, Reason) {
        let e = r.unwrap_err();
        (e.field, e.reason)
    }

    #[test]
    fn a_complete_enterprise_passes() {
        enterprise(&good_enterprise()).unwrap();
    }

    #[test]
    fn malformed_credit_code_names_the_field_in_both_languages() {
        let mut e = good_enterprise();
        e.credit_code = "91350100M000100Y44".into();
        let error = enterprise(&e).unwrap_err();
        assert_eq!(error.field, "credit_code");
        assert!(error.message_zh().contains("校验码错误"), "{}", error.message_zh());
        assert!(error.message_zh().contains("统一社会信用代码"));
        assert!(error.message_en().contains("check character '4'"), "{}", error.message_en());
    }

    #[test]
    fn enterprise_requires_name_county_and_industry() {
        let mut e = good_enterprise();
        e.name = "  ".into();
        assert_eq!(field_of(enterprise(&e)), ("name".into(), Reason::Required));
        let mut e = good_enterprise();
        e.county.code = "35010".into();
        assert_eq!(field_of(enterprise(&e)), ("county.code".into(), Reason::CountyCode));
        let mut e = good_enterprise();
        e.industry = None;
        assert_eq!(field_of(enterprise(&e)), ("industry".into(), Reason::Required));
        let mut e = good_enterprise();
        e.assistance_years.insert("1850".into(), true);
        assert_eq!(
            field_of(enterprise(&e)),
            ("assistance_years.1850".into(), Reason::OutOfRange { min: 2000, max: 2100 })
        );
    }

    #[test]
    fn oversized_text_is_refused() {
        let mut e = good_enterprise();
        e.name = "矿".repeat(MAX_SHORT_TEXT + 1);
        assert_eq!(field_of(enterprise(&e)), ("name".into(), Reason::TooLong { max: MAX_SHORT_TEXT }));
        let mut v = good_visit();
        v.notes = "x".repeat(MAX_LONG_TEXT + 1);
        assert_eq!(field_of(visit(&v, today())), ("notes".into(), Reason::TooLong { max: MAX_LONG_TEXT }));
    }

    #[test]
    fn a_complete_visit_passes() {
        visit(&good_visit(), today()).unwrap();
    }

    #[test]
    fn visit_date_in_the_future_or_malformed_is_refused() {
        let mut v = good_visit();
        v.visit_date = "2025-07-01".into();
        assert_eq!(field_of(visit(&v, today())), ("visit_date".into(), Reason::FutureDate));
        v.visit_date = "2025/06/01".into();
        assert_eq!(field_of(visit(&v, today())), ("visit_date".into(), Reason::InvalidDate));
        v.visit_date = "".into();
        assert_eq!(field_of(visit(&v, today())), ("visit_date".into(), Reason::Required));
    }

    #[test]
    fn negative_counts_are_refused() {
        let mut v = good_visit();
        v.hazard_identification
            .posts
            .insert("p1".into(), Post { name: "破碎工".into(), exposed_workers: -3, ..Default::default() });
        assert_eq!(
            field_of(visit(&v, today())),
            ("hazard_identification.posts.p1.exposed_workers".into(), Reason::Negative)
        );
        let mut v = good_visit();
        v.training.sessions.insert(
            "t1".into(),
            TrainingSession { audience: Some(TrainingAudience::Workers), attendees: -1, ..Default::default() },
        );
        assert_eq!(field_of(visit(&v, today())), ("training.sessions.t1.attendees".into(), Reason::Negative));
    }

    #[test]
    fn measured_value_without_unit_is_refused() {
        let mut v = good_visit();
        v.remediation.posts.insert(
            "r1".into(),
            OverLimitPost {
                post: "破碎岗".into(),
                measured_value: Some(92.5),
                limit: Some(85.0),
                ..Default::default()
            },
        );
        assert_eq!(field_of(visit(&v, today())), ("remediation.posts.r1.unit".into(), Reason::MissingUnit));
        v.remediation.posts.get_mut("r1").unwrap().unit = "dB(A)".into();
        visit(&v, today()).unwrap();
    }

    #[test]
    fn screening_needs_consent_and_consistent_counts() {
        let mut v = good_visit();
        v.chronic_screening.screened = 10;
        assert_eq!(field_of(visit(&v, today())), ("chronic_screening.screened".into(), Reason::NotConsented));
        v.chronic_screening.consent = true;
        v.chronic_screening.hypertension_abnormal = 11;
        assert_eq!(
            field_of(visit(&v, today())),
            (
                "chronic_screening.hypertension_abnormal".into(),
                Reason::Exceeds { of: "chronic_screening.screened".into() }
            )
        );
    }

    #[test]
    fn unknown_checklist_key_is_refused() {
        let mut v = good_visit();
        v.self_inspection.items.insert("bogus".into(), CheckResult::default());
        assert_eq!(
            field_of(visit(&v, today())),
            ("self_inspection.items.bogus".into(), Reason::UnknownValue { found: "bogus".into() })
        );
    }

    #[test]
    fn attachments_locations_and_signatures_are_checked() {
        let sha = "a".repeat(64);
        let mut v = good_visit();
        v.attachments.insert(
            sha.clone(),
            Attachment {
                sha256: sha.clone(),
                kind: Some(AttachmentKind::Photo),
                media_type: "image/jpeg".into(),
                size: 10,
                ..Default::default()
            },
        );
        visit(&v, today()).unwrap();
        v.attachments.get_mut(&sha).unwrap().size = -1;
        assert_eq!(field_of(visit(&v, today())).0, format!("attachments.{sha}.size"));
        v.attachments.get_mut(&sha).unwrap().size = 10;
        v.location = Some(GeoFix { latitude: 95.0, longitude: 119.3, accuracy_m: 5.0, captured_at: String::new() });
        assert_eq!(
            field_of(visit(&v, today())),
            ("location.latitude".into(), Reason::OutOfRange { min: -90, max: 90 })
        );
        v.location = Some(GeoFix {
            latitude: 26.0,
            longitude: 119.3,
            accuracy_m: 5.0,
            captured_at: "2025-07-02T08:00:00+08:00".into(),
        });
        assert_eq!(field_of(visit(&v, today())), ("location.captured_at".into(), Reason::FutureDate));
        v.location = None;
        v.signature =
            Some(Signature { signer_name: "王厂长".into(), image_sha256: "b".repeat(64), ..Default::default() });
        assert_eq!(field_of(visit(&v, today())), ("signature.signed_at".into(), Reason::Required));
        v.signature.as_mut().unwrap().signed_at = "2025-06-01T09:00:00+08:00".into();
        assert_eq!(field_of(visit(&v, today())).0, "signature.image_sha256");
        v.signature.as_mut().unwrap().image_sha256 = sha.clone();
        visit(&v, today()).unwrap();
        let mut bad = good_visit();
        bad.attachments.insert("XYZ".into(), Attachment::default());
        assert_eq!(field_of(visit(&bad, today())).0, "attachments.XYZ");
    }

    #[test]
    fn distance_between_points() {
        let fuzhou = GeoPoint { latitude: 26.0745, longitude: 119.2965 };
        let near = GeoPoint { latitude: 26.0835, longitude: 119.2965 };
        let d = fuzhou.distance_m(&near);
        assert!((d - 1000.8).abs() < 5.0, "{d}");
    }

    #[test]
    fn decode_names_the_field_of_an_unknown_category() {
        let json = br#"{"credit_code":"91350100M000100Y43","industry":"fishing"}"#;
        let e = decode::<Enterprise>(json).unwrap_err();
        assert_eq!(e.field, "industry");
        assert_eq!(e.reason, Reason::UnknownValue { found: "fishing".into() });
        let json = br#"{"hazard_identification":{"posts":{"p":{"exposed_workers":"many"}}}}"#;
        let e = decode::<Visit>(json).unwrap_err();
        assert_eq!(e.field, "hazard_identification.posts.p.exposed_workers");
    }
}
