//! The records and vocabularies of `ohassist_core::model`, mirrored field for field as uniffi
//! Records and Enums, with the conversions both ways.
//!
//! uniffi has no ordered map, so the core's `BTreeMap<String, T>` collections are
//! `HashMap<String, T>` here (their keys are item ids or vocabulary codes; order carries no
//! meaning). Each mirror is declared with [`mirror_record!`] or [`mirror_enum!`], which
//! write both conversions as struct literals and exhaustive matches: a field or value added
//! to the core and not here stops the build instead of being dropped silently.

use std::collections::{BTreeMap, HashMap};

use ohassist_core::model as m;

/// A lossless conversion between a core type and its mirror (both directions are
/// implemented, so `x.bridge()` works wherever the target type is known).
pub(crate) trait Bridge<T> {
    fn bridge(self) -> T;
}

macro_rules! same_type {
    ($($t:ty),*) => { $(impl Bridge<$t> for $t { fn bridge(self) -> $t { self } })* };
}
same_type!(String, bool, u8, i32, i64, u32, u64, f64);

impl<A: Bridge<B>, B> Bridge<Option<B>> for Option<A> {
    fn bridge(self) -> Option<B> {
        self.map(Bridge::bridge)
    }
}

impl<A: Bridge<B>, B> Bridge<Vec<B>> for Vec<A> {
    fn bridge(self) -> Vec<B> {
        self.into_iter().map(Bridge::bridge).collect()
    }
}

impl<A: Bridge<B>, B> Bridge<HashMap<String, B>> for BTreeMap<String, A> {
    fn bridge(self) -> HashMap<String, B> {
        self.into_iter().map(|(k, v)| (k, v.bridge())).collect()
    }
}

impl<A: Bridge<B>, B> Bridge<BTreeMap<String, B>> for HashMap<String, A> {
    fn bridge(self) -> BTreeMap<String, B> {
        self.into_iter().map(|(k, v)| (k, v.bridge())).collect()
    }
}

/// Page sizes and offsets: `u32` across the FFI, `usize` in the core.
impl Bridge<usize> for u32 {
    fn bridge(self) -> usize {
        self as usize
    }
}

impl Bridge<u32> for usize {
    fn bridge(self) -> u32 {
        u32::try_from(self).unwrap_or(u32::MAX)
    }
}

/// Declares a uniffi Record mirroring the core struct `$core`, with both conversions.
macro_rules! mirror_record {
    ($(#[$meta:meta])* $name:ident = $core:path {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, uniffi::Record)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }
        impl $crate::model::Bridge<$name> for $core {
            fn bridge(self) -> $name {
                $name { $($field: $crate::model::Bridge::bridge(self.$field),)* }
            }
        }
        impl $crate::model::Bridge<$core> for $name {
            fn bridge(self) -> $core {
                $core { $($field: $crate::model::Bridge::bridge(self.$field),)* }
            }
        }
    };
}
pub(crate) use mirror_record;

/// Declares a uniffi Enum mirroring the core's unit enum `$core`, with both conversions.
macro_rules! mirror_enum {
    ($(#[$meta:meta])* $name:ident = $core:path { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }
        impl $crate::model::Bridge<$name> for $core {
            fn bridge(self) -> $name {
                use $core as Core;
                match self { $(Core::$variant => $name::$variant,)+ }
            }
        }
        impl $crate::model::Bridge<$core> for $name {
            fn bridge(self) -> $core {
                use $core as Core;
                match self { $($name::$variant => Core::$variant,)+ }
            }
        }
    };
}

// The record defaults below (`#[uniffi(default = 1)]`) state the schema version literally.
const _: () = assert!(m::SCHEMA_VERSION == 1, "update the schema_version defaults in bindings/src/model.rs");

// ---- vocabularies --------------------------------------------------------------------

mirror_enum! {
    /// 行业类别, as Table 1 names them.
    Industry = m::Industry { Mining, BuildingMaterials, Metallurgy, Chemical, Other, }
}

mirror_enum! {
    /// Size class per 统计上大中小微型企业划分办法(2017).
    SizeClass = m::SizeClass { Medium, Small, Micro, }
}

mirror_enum! {
    /// The self-inspection checklist (一次职业健康管理自查); its `code` keys `SelfInspection.items`.
    ChecklistItem = m::ChecklistItem {
        ThreeSimultaneities, Declaration, Detection, HealthExamination, Ppe, HazardNotification,
    }
}

mirror_enum! {
    Compliance = m::Compliance { Compliant, NotCompliant, NotApplicable, }
}

mirror_enum! {
    /// The six categories of the national catalogue of occupational hazard factors.
    HazardCategory = m::HazardCategory { Dust, Chemical, Physical, Radioactive, Biological, Other, }
}

mirror_enum! {
    /// On-site notification and PPE guidance items; its `code` keys `NotificationSection.items`.
    NotificationItem = m::NotificationItem {
        NoticeBoard, NotificationCard, WarningSign, Contract, ProtectiveFacilities, Ppe,
    }
}

mirror_enum! {
    TrainingAudience = m::TrainingAudience { Principal, Manager, Workers, }
}

mirror_enum! {
    TrainingMode = m::TrainingMode { OnSite, Online, }
}

mirror_enum! {
    /// Evaluation of a rectification's effect (治理效果评估).
    EffectEvaluation = m::EffectEvaluation { Qualified, Improved, NotEffective, }
}

mirror_enum! {
    /// Review of a visit by a supervisor: submitted → approved, or returned with a comment.
    ReviewState = m::ReviewState { Draft, Submitted, Approved, Returned, }
}

mirror_enum! {
    /// The "six ones" (六个一) and Chongqing's chronic-disease screening.
    SixOnes = m::SixOnes {
        SelfInspection, HazardIdentification, ManagementSystem, Notification, Training, Remediation,
        ChronicScreening,
    }
}

mirror_enum! {
    /// What an attachment is.
    AttachmentKind = m::AttachmentKind { Photo, Signature, Document, }
}

mirror_enum! {
    /// The two record kinds.
    RecordKind = m::RecordKind { Enterprise, Visit, }
}

/// The stable code of a checklist item: the key of `SelfInspection.items`. Pure, no I/O.
#[uniffi::export]
pub fn checklist_item_code(item: ChecklistItem) -> String {
    m::ChecklistItem::code(item.bridge()).to_string()
}

/// The stable code of a notification item: the key of `NotificationSection.items`. Pure, no I/O.
#[uniffi::export]
pub fn notification_item_code(item: NotificationItem) -> String {
    m::NotificationItem::code(item.bridge()).to_string()
}

/// A fresh random id for a new item of a keyed collection (posts, factors, sessions). Pure, no I/O.
#[uniffi::export]
pub fn new_item_id() -> String {
    m::new_item_id()
}

// ---- enterprise ----------------------------------------------------------------------

mirror_record! {
    /// The county (县区) an enterprise reports under; development zones report as 其他.
    County = m::County {
        /// Six-digit administrative division code (行政区划代码).
        #[uniffi(default = "")] code: String,
        #[uniffi(default = "")] name: String,
    }
}

mirror_record! {
    Contact = m::Contact {
        #[uniffi(default = "")] person: String,
        #[uniffi(default = "")] phone: String,
    }
}

mirror_record! {
    /// A point on the map (WGS 84 degrees).
    GeoPoint = m::GeoPoint {
        latitude: f64,
        longitude: f64,
    }
}

mirror_record! {
    /// Where and when the device was, as the app's location service reported it.
    GeoFix = m::GeoFix {
        latitude: f64,
        longitude: f64,
        /// Metres.
        #[uniffi(default = 0.0)] accuracy_m: f64,
        /// RFC 3339, the device's clock.
        #[uniffi(default = "")] captured_at: String,
    }
}

mirror_record! {
    /// An assisted enterprise (帮扶对象); its id is its unified social credit code.
    Enterprise = m::Enterprise {
        #[uniffi(default = 1)] schema_version: u32,
        /// 统一社会信用代码
        credit_code: String,
        name: String,
        county: County,
        #[uniffi(default = None)] industry: Option<Industry>,
        #[uniffi(default = None)] size: Option<SizeClass>,
        #[uniffi(default = "")] address: String,
        #[uniffi(default)] contact: Contact,
        /// 是否为市级帮扶对象
        #[uniffi(default = false)] city_level_target: bool,
        /// 是否纳入职业病危害专项治理
        #[uniffi(default = false)] special_governance: bool,
        #[uniffi(default = false)] has_occupational_disease: bool,
        /// Inside the surveillance-monitoring scope: counts as having completed detection.
        #[uniffi(default = false)] in_surveillance_scope: bool,
        /// Years on the assistance list (`"2025" → true`); `false` removes a year.
        #[uniffi(default)] assistance_years: HashMap<String, bool>,
        /// Registered location, against which visits' recorded locations are checked.
        #[uniffi(default = None)] location: Option<GeoPoint>,
        #[uniffi(default = false)] deleted: bool,
    }
}

// ---- visit ---------------------------------------------------------------------------

mirror_record! {
    /// One answer of the self-inspection checklist.
    CheckResult = m::CheckResult {
        #[uniffi(default = None)] result: Option<Compliance>,
        /// 发现的问题
        #[uniffi(default = "")] problem: String,
    }
}

mirror_record! {
    SelfInspection = m::SelfInspection {
        /// Keyed by `checklist_item_code(item)`.
        #[uniffi(default)] items: HashMap<String, CheckResult>,
    }
}

mirror_record! {
    /// A hazard factor present at a post.
    HazardFactor = m::HazardFactor {
        #[uniffi(default = None)] category: Option<HazardCategory>,
        /// e.g. 矽尘, 噪声, 苯
        #[uniffi(default = "")] name: String,
        #[uniffi(default = false)] deleted: bool,
    }
}

mirror_record! {
    /// A workplace or post (岗位) with its hazard factors.
    Post = m::Post {
        #[uniffi(default = "")] workplace: String,
        #[uniffi(default = "")] name: String,
        #[uniffi(default = 0)] exposed_workers: i64,
        /// Keyed by `new_item_id()`.
        #[uniffi(default)] factors: HashMap<String, HazardFactor>,
        #[uniffi(default = "")] detection_result: String,
        #[uniffi(default = None)] health_examination_done: Option<bool>,
        #[uniffi(default = false)] deleted: bool,
    }
}

mirror_record! {
    HazardIdentification = m::HazardIdentification {
        /// Keyed by `new_item_id()`.
        #[uniffi(default)] posts: HashMap<String, Post>,
    }
}

mirror_record! {
    ManagementSystem = m::ManagementSystem {
        /// 职业健康管理制度已建立
        #[uniffi(default = None)] system_established: Option<bool>,
        /// 应急预案
        #[uniffi(default = None)] emergency_plan: Option<bool>,
        /// 职业健康档案“五盒一袋” (Chongqing)
        #[uniffi(default = None)] archive_five_boxes_one_bag: Option<bool>,
        #[uniffi(default = "")] notes: String,
    }
}

mirror_record! {
    NotificationCheck = m::NotificationCheck {
        #[uniffi(default = None)] status: Option<Compliance>,
        /// 整改建议
        #[uniffi(default = "")] suggestion: String,
    }
}

mirror_record! {
    NotificationSection = m::NotificationSection {
        /// Keyed by `notification_item_code(item)`.
        #[uniffi(default)] items: HashMap<String, NotificationCheck>,
    }
}

mirror_record! {
    /// One training session and who attended it.
    TrainingSession = m::TrainingSession {
        /// `YYYY-MM-DD`
        #[uniffi(default = "")] date: String,
        #[uniffi(default = None)] audience: Option<TrainingAudience>,
        #[uniffi(default = 0)] attendees: i64,
        #[uniffi(default = None)] mode: Option<TrainingMode>,
        /// Organised by an administrative body: only such training counts for the tables.
        #[uniffi(default = false)] organised_by_authority: bool,
        #[uniffi(default = "")] topic: String,
        #[uniffi(default = false)] deleted: bool,
    }
}

mirror_record! {
    TrainingSection = m::TrainingSection {
        /// Keyed by `new_item_id()`.
        #[uniffi(default)] sessions: HashMap<String, TrainingSession>,
    }
}

mirror_record! {
    /// A post whose measured exposure exceeds the occupational exposure limit.
    OverLimitPost = m::OverLimitPost {
        #[uniffi(default = "")] post: String,
        #[uniffi(default = "")] factor: String,
        #[uniffi(default = None)] measured_value: Option<f64>,
        #[uniffi(default = None)] limit: Option<f64>,
        /// e.g. `dB(A)`, `mg/m³`; required with a measured value.
        #[uniffi(default = "")] unit: String,
        #[uniffi(default = "")] suggestion: String,
        #[uniffi(default = "")] rectification_plan: String,
        #[uniffi(default = "")] guidance: String,
        #[uniffi(default = None)] effect: Option<EffectEvaluation>,
        #[uniffi(default = false)] deleted: bool,
    }
}

mirror_record! {
    Remediation = m::Remediation {
        /// Keyed by `new_item_id()`.
        #[uniffi(default)] posts: HashMap<String, OverLimitPost>,
        /// The inspector checked every post and none is over limit.
        #[uniffi(default = false)] no_over_limit_posts: bool,
    }
}

mirror_record! {
    /// Chronic-disease screening (Chongqing): aggregate counts only, with consent.
    ChronicScreening = m::ChronicScreening {
        #[uniffi(default = false)] consent: bool,
        #[uniffi(default = 0)] screened: i64,
        #[uniffi(default = 0)] hypertension_abnormal: i64,
        #[uniffi(default = 0)] diabetes_abnormal: i64,
        #[uniffi(default = 0)] follow_ups: i64,
    }
}

mirror_record! {
    /// A supervisor's review of a visit.
    Review = m::Review {
        state: ReviewState,
        #[uniffi(default = "")] comment: String,
        #[uniffi(default = "")] reviewer: String,
        /// RFC 3339
        #[uniffi(default = "")] at: String,
    }
}

mirror_record! {
    /// A photo, signature image or document attached to a visit, keyed by its SHA-256.
    Attachment = m::Attachment {
        /// 64 lowercase hex digits.
        sha256: String,
        #[uniffi(default = None)] kind: Option<AttachmentKind>,
        #[uniffi(default = "")] media_type: String,
        #[uniffi(default = 0)] size: i64,
        #[uniffi(default = "")] caption: String,
        /// RFC 3339, the device's clock.
        #[uniffi(default = "")] taken_at: String,
        #[uniffi(default = "")] author: String,
        /// The section it documents (its code), or empty.
        #[uniffi(default = "")] section: String,
        #[uniffi(default = "")] item_id: String,
        #[uniffi(default = None)] location: Option<GeoFix>,
        #[uniffi(default = false)] deleted: bool,
    }
}

mirror_record! {
    /// The enterprise principal's signature of the visit.
    Signature = m::Signature {
        signer_name: String,
        #[uniffi(default = "")] signed_at: String,
        image_sha256: String,
        /// The record version the signer saw.
        #[uniffi(default = [])] signed_version: Vec<String>,
    }
}

mirror_record! {
    /// A visit to an enterprise, covering one or more of the six ones. Start from
    /// `new_visit(enterprise_id, visit_date)` and fill in the sections.
    Visit = m::Visit {
        #[uniffi(default = 1)] schema_version: u32,
        /// The enterprise's credit code, which is also its record id.
        enterprise_id: String,
        /// The county of the enterprise at the time of the visit; empty takes the enterprise's.
        #[uniffi(default = "")] county_code: String,
        /// `YYYY-MM-DD`
        visit_date: String,
        /// User id → display name.
        #[uniffi(default)] inspectors: HashMap<String, String>,
        #[uniffi(default)] self_inspection: SelfInspection,
        #[uniffi(default)] hazard_identification: HazardIdentification,
        #[uniffi(default)] management_system: ManagementSystem,
        #[uniffi(default)] notification: NotificationSection,
        #[uniffi(default)] training: TrainingSection,
        #[uniffi(default)] remediation: Remediation,
        #[uniffi(default)] chronic_screening: ChronicScreening,
        #[uniffi(default = "")] notes: String,
        review: Review,
        /// Where the device was when the visit was recorded.
        #[uniffi(default = None)] location: Option<GeoFix>,
        /// Keyed by SHA-256.
        #[uniffi(default)] attachments: HashMap<String, Attachment>,
        #[uniffi(default = None)] signature: Option<Signature>,
        #[uniffi(default = false)] deleted: bool,
    }
}

/// An empty enterprise with the core's defaults, to fill in before `create_enterprise`.
/// Pure, no I/O.
#[uniffi::export]
pub fn new_enterprise(credit_code: String, name: String, county: County) -> Enterprise {
    m::Enterprise { credit_code, name, county: county.bridge(), ..Default::default() }.bridge()
}

/// An empty visit with the core's defaults (a draft review), to fill in before
/// `create_visit`. Pure, no I/O.
#[uniffi::export]
pub fn new_visit(enterprise_id: String, visit_date: String) -> Visit {
    m::Visit { enterprise_id, visit_date, ..Default::default() }.bridge()
}
