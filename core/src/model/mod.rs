//! The typed records: an [`Enterprise`] and a [`Visit`], as `../shared/domain.md` describes
//! them, and the closed vocabularies they use.
//!
//! Records are plain serde structs. The document layer (`crate::doc`) maps them onto
//! Automerge documents through their JSON form, so these rules hold for every field:
//! - every field has a default (`#[serde(default)]`), so a document written before a field
//!   existed still reads (schema evolution);
//! - collections that two inspectors may grow at the same time are `BTreeMap`s keyed by a
//!   random id ([`new_item_id`]), never `Vec`s, so concurrent additions both survive;
//! - items of those collections are deleted with a `deleted` flag, never removed, so a
//!   deletion concurrent with an edit keeps the edit;
//! - enums are stored by a stable ASCII code; [`Label`] gives their Chinese and English names.
//!
//! Nothing here touches storage or the network.

mod enterprise;
mod labels;
mod visit;

pub use enterprise::*;
pub use labels::*;
pub use visit::*;

/// The record schema written by this code. Older documents read with defaults for the
/// fields they lack; a document with a newer version is still read (unknown fields are
/// kept in the document, never rewritten).
pub const SCHEMA_VERSION: u32 = 1;

/// A fresh random id for a keyed collection item or a visit.
pub fn new_item_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The two record kinds, one Automerge document each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Enterprise,
    Visit,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Enterprise => "enterprise",
            RecordKind::Visit => "visit",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enterprise" => Some(RecordKind::Enterprise),
            "visit" => Some(RecordKind::Visit),
            _ => None,
        }
    }
}

/// Chinese and English names of a vocabulary value, for everything a person sees.
pub trait Label {
    fn label_zh(&self) -> &'static str;
    fn label_en(&self) -> &'static str;
}

/// Declares a closed vocabulary: the serde code, the Chinese and the English label of each
/// value, and `ALL` in display order.
macro_rules! vocabulary {
    // `tt`, not `literal`: a literal fragment reaches derive macros wrapped in an invisible group,
    // which utoipa does not read as a serde rename.
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:tt, $zh:literal, $en:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $(#[serde(rename = $code)] $variant,)+
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stable code stored in documents and on the wire.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }
        impl $crate::model::Label for $name {
            fn label_zh(&self) -> &'static str { match self { $($name::$variant => $zh,)+ } }
            fn label_en(&self) -> &'static str { match self { $($name::$variant => $en,)+ } }
        }
    };
}
pub(crate) use vocabulary;
