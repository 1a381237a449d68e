use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{vocabulary, SCHEMA_VERSION};

vocabulary! {
    /// The self-inspection checklist (一次职业健康管理自查).
    ChecklistItem {
        ThreeSimultaneities = "three_simultaneities", "建设项目“三同时”", "Construction project \"three simultaneities\"";
        Declaration = "declaration", "职业病危害项目申报", "Hazard project declaration";
        Detection = "detection", "职业病危害因素检测", "Hazard-factor detection";
        HealthExamination = "health_examination", "职业健康检查", "Occupational health examinations";
        Ppe = "ppe", "防护用品配备", "PPE provision";
        HazardNotification = "hazard_notification", "危害因素告知", "Hazard notification";
    }
}

vocabulary! {
    Compliance {
        Compliant = "compliant", "符合", "Compliant";
        NotCompliant = "not_compliant", "不符合", "Not compliant";
        NotApplicable = "not_applicable", "不适用", "Not applicable";
    }
}

vocabulary! {
    /// The six categories of the national catalogue of occupational hazard factors.
    HazardCategory {
        Dust = "dust", "粉尘", "Dust";
        Chemical = "chemical", "化学因素", "Chemical";
        Physical = "physical", "物理因素", "Physical";
        Radioactive = "radioactive", "放射性因素", "Radioactive";
        Biological = "biological", "生物因素", "Biological";
        Other = "other", "其他因素", "Other";
    }
}

vocabulary! {
    /// On-site notification and PPE guidance items (现场告知和防护用品配置指导).
    NotificationItem {
        NoticeBoard = "notice_board", "告知栏", "Notice board";
        NotificationCard = "notification_card", "告知卡", "Notification cards";
        WarningSign = "warning_sign", "警示标识", "Warning signs";
        Contract = "contract", "合同告知", "Contract notification";
        ProtectiveFacilities = "protective_facilities", "防护设施", "Protective facilities";
        Ppe = "ppe", "个人防护用品", "Personal protective equipment";
    }
}

vocabulary! {
    TrainingAudience {
        Principal = "principal", "主要负责人", "Principal";
        Manager = "manager", "职业健康管理人员", "OH managers";
        Workers = "workers", "劳动者", "Workers";
    }
}

vocabulary! {
    TrainingMode {
        OnSite = "on_site", "现场", "On site";
        Online = "online", "线上", "Online";
    }
}

vocabulary! {
    /// Evaluation of a rectification's effect (治理效果评估).
    EffectEvaluation {
        Qualified = "qualified", "治理后达标", "Within limit after rectification";
        Improved = "improved", "有改善，仍超标", "Improved, still over limit";
        NotEffective = "not_effective", "未见改善", "No improvement";
    }
}

vocabulary! {
    /// Review of a visit by a supervisor: submitted → approved, or returned with a comment.
    ReviewState {
        Draft = "draft", "草稿", "Draft";
        Submitted = "submitted", "已提交", "Submitted";
        Approved = "approved", "已通过", "Approved";
        Returned = "returned", "已退回", "Returned";
    }
}

vocabulary! {
    /// The "six ones" (六个一) and Chongqing's chronic-disease screening.
    SixOnes {
        SelfInspection = "self_inspection", "管理自查", "Self-inspection";
        HazardIdentification = "hazard_identification", "危害因素辨识", "Hazard identification";
        ManagementSystem = "management_system", "管理制度", "Management system";
        Notification = "notification", "告知与防护指导", "Notification and PPE guidance";
        Training = "training", "职业健康培训", "Training";
        Remediation = "remediation", "超标岗位治理", "Over-limit remediation";
        ChronicScreening = "chronic_screening", "慢病筛查", "Chronic disease screening";
    }
}

vocabulary! {
    /// What an attachment is.
    AttachmentKind {
        Photo = "photo", "照片", "Photo";
        Signature = "signature", "签名", "Signature";
        Document = "document", "文件", "Document";
    }
}

/// Where and when the device was, as the app's location service reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct GeoFix {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres (the radius of the fix's uncertainty).
    pub accuracy_m: f64,
    /// RFC 3339, the device's clock.
    pub captured_at: String,
}

/// A photo, a signature image or a document attached to a visit. The bytes live apart
/// (content-addressed by SHA-256, in the phone's attachment store and on the server); the
/// visit holds this reference, keyed by the hash, so the same file attached twice is one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Attachment {
    /// 64 lowercase hex digits.
    pub sha256: String,
    pub kind: Option<AttachmentKind>,
    /// e.g. `image/jpeg`, `application/pdf`
    pub media_type: String,
    pub size: i64,
    pub caption: String,
    /// RFC 3339, the device's clock.
    pub taken_at: String,
    /// User id of who attached it.
    pub author: String,
    /// The section it documents ([`SixOnes::code`]), or empty for the visit as a whole.
    pub section: String,
    /// A post or item id within that section, or empty.
    pub item_id: String,
    pub location: Option<GeoFix>,
    pub deleted: bool,
}

/// The enterprise principal's signature of the visit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Signature {
    pub signer_name: String,
    /// RFC 3339, the device's clock.
    pub signed_at: String,
    /// The signature image, an attachment of kind `signature`.
    pub image_sha256: String,
    /// The record's version (document heads) the signer saw: what changed after it is shown.
    pub signed_version: Vec<String>,
}

/// One answer of the self-inspection checklist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct CheckResult {
    pub result: Option<Compliance>,
    /// 发现的问题
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SelfInspection {
    /// Keyed by [`ChecklistItem::code`].
    pub items: BTreeMap<String, CheckResult>,
}

impl SelfInspection {
    pub fn get(&self, item: ChecklistItem) -> Option<&CheckResult> {
        self.items.get(item.code())
    }
    pub fn set(&mut self, item: ChecklistItem, result: Compliance, problem: &str) {
        self.items.insert(item.code().to_string(), CheckResult { result: Some(result), problem: problem.to_string() });
    }
}

/// A hazard factor present at a post.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HazardFactor {
    pub category: Option<HazardCategory>,
    /// e.g. 矽尘, 噪声, 苯
    pub name: String,
    pub deleted: bool,
}

/// A workplace or post (岗位) with its hazard factors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Post {
    pub workplace: String,
    pub name: String,
    pub exposed_workers: i64,
    /// Keyed by a random item id.
    pub factors: BTreeMap<String, HazardFactor>,
    pub detection_result: String,
    pub health_examination_done: Option<bool>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HazardIdentification {
    /// Keyed by a random item id.
    pub posts: BTreeMap<String, Post>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ManagementSystem {
    /// 职业健康管理制度已建立
    pub system_established: Option<bool>,
    /// 应急预案
    pub emergency_plan: Option<bool>,
    /// 职业健康档案“五盒一袋” (Chongqing)
    pub archive_five_boxes_one_bag: Option<bool>,
    pub notes: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct NotificationCheck {
    pub status: Option<Compliance>,
    /// 整改建议
    pub suggestion: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct NotificationSection {
    /// Keyed by [`NotificationItem::code`].
    pub items: BTreeMap<String, NotificationCheck>,
}

/// One training session and who attended it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TrainingSession {
    /// `YYYY-MM-DD`
    pub date: String,
    pub audience: Option<TrainingAudience>,
    pub attendees: i64,
    pub mode: Option<TrainingMode>,
    /// Organised by an administrative body: only such training counts for the tables.
    pub organised_by_authority: bool,
    pub topic: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TrainingSection {
    /// Keyed by a random item id.
    pub sessions: BTreeMap<String, TrainingSession>,
}

/// A post whose measured exposure exceeds the occupational exposure limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct OverLimitPost {
    pub post: String,
    pub factor: String,
    pub measured_value: Option<f64>,
    pub limit: Option<f64>,
    /// e.g. `dB(A)`, `mg/m³`; required with a measured value.
    pub unit: String,
    pub suggestion: String,
    pub rectification_plan: String,
    pub guidance: String,
    pub effect: Option<EffectEvaluation>,
    pub deleted: bool,
}

impl OverLimitPost {
    pub fn exceeds_limit(&self) -> bool {
        matches!((self.measured_value, self.limit), (Some(m), Some(l)) if m > l)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Remediation {
    /// Keyed by a random item id.
    pub posts: BTreeMap<String, OverLimitPost>,
    /// The inspector checked every post and none is over limit.
    pub no_over_limit_posts: bool,
}

/// Chronic-disease screening (Chongqing). Aggregate counts only: individual results are
/// personal health information and do not travel in the visit record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ChronicScreening {
    /// The enterprise consented to the screening.
    pub consent: bool,
    pub screened: i64,
    pub hypertension_abnormal: i64,
    pub diabetes_abnormal: i64,
    pub follow_ups: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Review {
    pub state: ReviewState,
    pub comment: String,
    pub reviewer: String,
    /// RFC 3339
    pub at: String,
}

impl Default for Review {
    fn default() -> Self {
        Review { state: ReviewState::Draft, comment: String::new(), reviewer: String::new(), at: String::new() }
    }
}

/// A visit to an enterprise, covering one or more of the six ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Visit {
    pub schema_version: u32,
    /// The enterprise's credit code, which is also its record id.
    pub enterprise_id: String,
    /// The county of the enterprise at the time of the visit: the visit's scope.
    pub county_code: String,
    /// `YYYY-MM-DD`
    pub visit_date: String,
    /// User id → display name.
    pub inspectors: BTreeMap<String, String>,
    pub self_inspection: SelfInspection,
    pub hazard_identification: HazardIdentification,
    pub management_system: ManagementSystem,
    pub notification: NotificationSection,
    pub training: TrainingSection,
    pub remediation: Remediation,
    pub chronic_screening: ChronicScreening,
    pub notes: String,
    pub review: Review,
    /// Where the device was when the visit was recorded.
    pub location: Option<GeoFix>,
    /// Keyed by the attachment's SHA-256.
    pub attachments: BTreeMap<String, Attachment>,
    pub signature: Option<Signature>,
    pub deleted: bool,
}

impl Default for Visit {
    fn default() -> Self {
        Visit {
            schema_version: SCHEMA_VERSION,
            enterprise_id: String::new(),
            county_code: String::new(),
            visit_date: String::new(),
            inspectors: BTreeMap::new(),
            self_inspection: SelfInspection::default(),
            hazard_identification: HazardIdentification::default(),
            management_system: ManagementSystem::default(),
            notification: NotificationSection::default(),
            training: TrainingSection::default(),
            remediation: Remediation::default(),
            chronic_screening: ChronicScreening::default(),
            notes: String::new(),
            review: Review::default(),
            location: None,
            attachments: BTreeMap::new(),
            signature: None,
            deleted: false,
        }
    }
}

impl Visit {
    /// The calendar year of the visit, if its date parses.
    pub fn year(&self) -> Option<i32> {
        self.visit_date.get(..4)?.parse().ok()
    }

    /// Which of the six ones (and screening) this visit records.
    pub fn covers(&self, item: SixOnes) -> bool {
        match item {
            SixOnes::SelfInspection => self.self_inspection.items.values().any(|c| c.result.is_some()),
            SixOnes::HazardIdentification => self.hazard_identification.posts.values().any(|p| !p.deleted),
            SixOnes::ManagementSystem => {
                let m = &self.management_system;
                m.system_established.is_some() || m.emergency_plan.is_some() || m.archive_five_boxes_one_bag.is_some()
            }
            SixOnes::Notification => self.notification.items.values().any(|n| n.status.is_some()),
            SixOnes::Training => self.training.sessions.values().any(|s| !s.deleted),
            SixOnes::Remediation => {
                self.remediation.no_over_limit_posts || self.remediation.posts.values().any(|p| !p.deleted)
            }
            SixOnes::ChronicScreening => self.chronic_screening.consent && self.chronic_screening.screened > 0,
        }
    }
}
