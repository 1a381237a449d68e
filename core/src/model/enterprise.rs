use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{vocabulary, SCHEMA_VERSION};

vocabulary! {
    /// 行业类别, as Table 1 names them.
    Industry {
        Mining = "mining", "矿山", "Mining";
        BuildingMaterials = "building_materials", "建材", "Building materials";
        Metallurgy = "metallurgy", "冶金", "Metallurgy";
        Chemical = "chemical", "化工", "Chemicals";
        Other = "other", "其他", "Other";
    }
}

vocabulary! {
    /// Size class per 统计上大中小微型企业划分办法(2017).
    SizeClass {
        Medium = "medium", "中型", "Medium";
        Small = "small", "小型", "Small";
        Micro = "micro", "微型", "Micro";
    }
}

/// The county (县区) an enterprise reports under. A development zone outside the
/// administrative divisions is a unit of its own on the server, with a code in its city's
/// range (the statistics bureau's 71–79, or one an admin gives it); its enterprises carry the
/// zone's code and the tables print 其他 for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct County {
    /// Six-digit administrative division code (行政区划代码), e.g. `210102`.
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Contact {
    pub person: String,
    pub phone: String,
}

/// An assisted enterprise (帮扶对象). One document per unified social credit code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Enterprise {
    pub schema_version: u32,
    /// 统一社会信用代码; also the document's identity (see `crate::doc::genesis`).
    pub credit_code: String,
    pub name: String,
    pub county: County,
    pub industry: Option<Industry>,
    pub size: Option<SizeClass>,
    pub address: String,
    pub contact: Contact,
    /// 是否为市级帮扶对象
    pub city_level_target: bool,
    /// 是否纳入职业病危害专项治理
    pub special_governance: bool,
    /// Has occupational disease or suspected cases (存在职业病或疑似职业病).
    pub has_occupational_disease: bool,
    /// Inside the surveillance-monitoring scope: counts as having completed detection.
    pub in_surveillance_scope: bool,
    /// Years on the assistance list, as a keyed set (`"2025" → true`) so two phones adding
    /// different years both survive; `false` removes a year.
    pub assistance_years: BTreeMap<String, bool>,
    /// Registered location (WGS 84), against which visits' recorded locations are checked.
    pub location: Option<GeoPoint>,
    pub deleted: bool,
}

/// A point on the map (WGS 84 degrees).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    /// Great-circle distance in metres (haversine).
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        let (la1, la2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dla = la2 - la1;
        let dlo = (other.longitude - self.longitude).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6_371_008.8 * a.sqrt().asin()
    }
}

impl Default for Enterprise {
    fn default() -> Self {
        Enterprise {
            schema_version: SCHEMA_VERSION,
            credit_code: String::new(),
            name: String::new(),
            county: County::default(),
            industry: None,
            size: None,
            address: String::new(),
            contact: Contact::default(),
            city_level_target: false,
            special_governance: false,
            has_occupational_disease: false,
            in_surveillance_scope: false,
            assistance_years: BTreeMap::new(),
            location: None,
            deleted: false,
        }
    }
}

impl Enterprise {
    pub fn is_assisted_in(&self, year: i32) -> bool {
        self.assistance_years.get(&year.to_string()).copied().unwrap_or(false)
    }

    pub fn add_year(&mut self, year: i32) {
        self.assistance_years.insert(year.to_string(), true);
    }

    /// The years on the list, ascending.
    pub fn years(&self) -> Vec<i32> {
        self.assistance_years.iter().filter(|(_, on)| **on).filter_map(|(y, _)| y.parse().ok()).collect()
    }
}
