//! Org units and what they cover. An org unit is a 6-digit administrative division code:
//! a province `PP0000` covers every code starting `PP`, a city `PPCC00` every code starting
//! `PPCC`, a county only itself, and `000000` the whole country.

/// The whole country: the default org unit of the first admin.
pub const COUNTRY: &str = "000000";

/// True when `code` is six ASCII digits.
pub fn is_division_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The prefix every code inside `org_unit` starts with (`""` for the whole country).
/// `org_unit` must be a division code.
pub fn prefix(org_unit: &str) -> &str {
    if org_unit == COUNTRY {
        ""
    } else if org_unit.ends_with("0000") {
        &org_unit[..2]
    } else if org_unit.ends_with("00") {
        &org_unit[..4]
    } else {
        org_unit
    }
}

/// True when `code` (a county, city or province) lies inside `org_unit`.
pub fn covers(org_unit: &str, code: &str) -> bool {
    is_division_code(org_unit) && is_division_code(code) && code.starts_with(prefix(org_unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_their_divisions_and_nothing_else() {
        assert!(covers("000000", "210102"));
        assert!(covers("210000", "210102"));
        assert!(covers("210000", "211000"));
        assert!(!covers("210000", "220102"));
        assert!(covers("210100", "210102"));
        assert!(covers("210100", "210100"));
        assert!(!covers("210100", "210202"));
        assert!(covers("210102", "210102"));
        assert!(!covers("210102", "210103"));
        assert!(!covers("210102", "210100"), "a county does not cover its city");
        assert!(!covers("210102", ""));
        assert!(!covers("2101", "210102"));
    }
}
