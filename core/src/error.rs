//! The core's errors. [`ValidationError`] names the field and the reason, in Chinese and
//! English; [`Error`] is everything a core operation can fail with. Messages never carry
//! record contents (names, health figures): only ids, field paths and reasons.

use std::fmt;

use crate::credit_code::CreditCodeError;

/// Why a field was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Required,
    TooLong {
        max: usize,
    },
    CreditCode(CreditCodeError),
    CountyCode,
    Negative,
    MissingUnit,
    FutureDate,
    InvalidDate,
    /// Screening figures recorded without the enterprise's consent.
    NotConsented,
    /// A count larger than the count it is part of (`of` is that field).
    Exceeds {
        of: String,
    },
    /// A value outside the field's vocabulary, or of the wrong type.
    UnknownValue {
        found: String,
    },
    OutOfRange {
        min: i64,
        max: i64,
    },
    /// The field may not change after creation (e.g. the credit code of an enterprise).
    Immutable,
    /// Any other malformed input, with the parser's words.
    Malformed(String),
}

/// A refused input: the field (a dotted path such as `remediation.posts.<id>.unit`) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    pub field: String,
    pub reason: Reason,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: Reason) -> Self {
        ValidationError { field: field.into(), reason }
    }

    pub fn message_en(&self) -> String {
        let why = match &self.reason {
            Reason::Required => "is required".to_string(),
            Reason::TooLong { max } => format!("is longer than {max} characters"),
            Reason::CreditCode(CreditCodeError::Length(n)) => {
                format!("must be 18 characters, not {n}")
            }
            Reason::CreditCode(CreditCodeError::Character { position, found }) => {
                format!("has '{found}' at position {position}, which a credit code never uses")
            }
            Reason::CreditCode(CreditCodeError::CheckCharacter { expected, found }) => {
                format!("has check character '{found}', but the first 17 characters give '{expected}'")
            }
            Reason::CountyCode => "must be a 6-digit administrative division code".to_string(),
            Reason::Negative => "must not be negative".to_string(),
            Reason::MissingUnit => "has a measured value but no unit".to_string(),
            Reason::FutureDate => "is in the future".to_string(),
            Reason::InvalidDate => "must be a date as YYYY-MM-DD".to_string(),
            Reason::NotConsented => "may only be recorded with the enterprise's consent".to_string(),
            Reason::Exceeds { of } => format!("is larger than {of}"),
            Reason::UnknownValue { found } => format!("has an unknown value '{found}'"),
            Reason::OutOfRange { min, max } => format!("must be between {min} and {max}"),
            Reason::Immutable => "cannot be changed once recorded".to_string(),
            Reason::Malformed(m) => format!("is malformed: {m}"),
        };
        format!("{} {}", self.field, why)
    }

    pub fn message_zh(&self) -> String {
        let why = match &self.reason {
            Reason::Required => "不能为空".to_string(),
            Reason::TooLong { max } => format!("超过 {max} 个字符"),
            Reason::CreditCode(CreditCodeError::Length(n)) => {
                format!("应为 18 位，实际 {n} 位")
            }
            Reason::CreditCode(CreditCodeError::Character { position, found }) => {
                format!("第 {position} 位“{found}”不是统一社会信用代码使用的字符")
            }
            Reason::CreditCode(CreditCodeError::CheckCharacter { expected, found }) => {
                format!("校验码错误：第 18 位为“{found}”，按前 17 位计算应为“{expected}”")
            }
            Reason::CountyCode => "应为 6 位行政区划代码".to_string(),
            Reason::Negative => "不能为负数".to_string(),
            Reason::MissingUnit => "填写了测量值但未填写单位".to_string(),
            Reason::FutureDate => "不能晚于今天".to_string(),
            Reason::InvalidDate => "日期格式应为 YYYY-MM-DD".to_string(),
            Reason::NotConsented => "须经企业同意后方可记录".to_string(),
            Reason::Exceeds { of } => format!("不能大于 {of}"),
            Reason::UnknownValue { found } => format!("取值“{found}”无效"),
            Reason::OutOfRange { min, max } => format!("应在 {min} 至 {max} 之间"),
            Reason::Immutable => "登记后不能修改".to_string(),
            Reason::Malformed(m) => format!("格式错误：{m}"),
        };
        format!("{}：{}", field_label_zh(&self.field), why)
    }
}

/// The Chinese name of a field path's last meaningful segment, for messages.
fn field_label_zh(path: &str) -> String {
    let last = path.rsplit('.').find(|s| !is_item_id(s)).unwrap_or(path);
    let zh = match last {
        "credit_code" | "enterprise_id" => "统一社会信用代码",
        "name" => "名称",
        "code" | "county_code" => "县区代码",
        "industry" => "行业类别",
        "size" => "企业规模",
        "address" => "地址",
        "phone" => "联系电话",
        "person" => "联系人",
        "visit_date" => "帮扶日期",
        "date" => "日期",
        "exposed_workers" => "接触人数",
        "attendees" => "参加人数",
        "measured_value" => "测量值",
        "unit" => "单位",
        "limit" => "限值",
        "screened" => "筛查人数",
        "hypertension_abnormal" => "血压异常人数",
        "diabetes_abnormal" => "血糖异常人数",
        "follow_ups" => "随访人数",
        "notes" => "备注",
        "problem" => "发现的问题",
        "comment" => "审核意见",
        "assistance_years" => "帮扶年度",
        _ => return path.to_string(),
    };
    format!("{zh}（{path}）")
}

fn is_item_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_en())
    }
}

impl std::error::Error for ValidationError {}

/// Everything a core operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// Creating an enterprise whose credit code the store already holds: open `id` instead.
    #[error("an enterprise with this credit code is already registered: {id}")]
    AlreadyExists { id: String },
    #[error("no record with id {0}")]
    NotFound(String),
    #[error("no conflict at {path} in record {id}")]
    NoSuchConflict { id: String, path: String },
    #[error("record {id} is corrupt: {reason}")]
    CorruptDocument { id: String, reason: String },
    #[error("the database is corrupt or not an ohassist database: {0}")]
    CorruptDatabase(String),
    #[error("the database has schema version {found}, newer than this program supports ({supported}); update the app")]
    DatabaseTooNew { found: u32, supported: u32 },
    /// The key does not open this store: another key, or a file that is not an ohassist
    /// store. Nothing was changed.
    #[error("the key does not open this store (a wrong key, or not an ohassist store); nothing was changed")]
    WrongKey,
    /// A discard of a held record that was refused: not held, an unconfirmed or stale
    /// confirmation, or an enterprise whose visits are still on the phone.
    #[error("record {id} was not discarded: {reason}")]
    NotDiscardable { id: String, reason: String },
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
