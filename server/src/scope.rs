//! Org units and what they cover: the one scope decision, for records, users and every
//! page. An org unit is a 6-digit administrative division code: a province `PP0000` covers
//! every code starting `PP`, a city `PPCC00` every code starting `PPCC`, a county itself and
//! the development zones it hosts (a zone's code lies in its city's range, `PPCC71`..`99`,
//! so no prefix finds it), a zone only itself, and `000000` the whole country.
//!
//! The rule is written once, as SQL over the `units` table ([`sql`]); [`covers`] asks the
//! same SQL for one code when the prefix alone does not decide it.

use crate::sql::{params, Connection};

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

/// True when `code` lies inside `org_unit` by its prefix alone (without the zones a county
/// hosts): a fast path, and the whole rule where no database is at hand.
pub fn within(org_unit: &str, code: &str) -> bool {
    is_division_code(org_unit) && is_division_code(code) && code.starts_with(prefix(org_unit))
}

/// SQL that is true when the division code in `column` lies inside the org unit whose
/// [`prefix`] is bound to the parameter `param` (`?2`, `:prefix`): inside the prefix's range
/// (index-friendly), or a development zone hosted by that county. For a city or province
/// the zones are already in the range; the subquery finds nothing for them.
pub fn sql(column: &str, param: &str) -> String {
    format!(
        "(({column} >= {param} AND {column} < {param} || ':') \
         OR {column} IN (SELECT code FROM units WHERE zone = 1 AND host = {param}))"
    )
}

/// [`covers`] for a unit whose zone host is at hand (`host`: the host county of a zone,
/// `None` for anything else), as a loaded [`crate::units::Units`] knows it.
pub fn covers_hosted(org_unit: &str, code: &str, host: Option<&str>) -> bool {
    within(org_unit, code) || (is_division_code(code) && host.is_some_and(|h| h == org_unit))
}

/// True when `code` (a county, zone, city or province) lies inside `org_unit`, by [`sql`].
pub fn covers(conn: &Connection, org_unit: &str, code: &str) -> crate::sql::Result<bool> {
    if !is_division_code(org_unit) || !is_division_code(code) {
        return Ok(false);
    }
    if within(org_unit, code) {
        return Ok(true);
    }
    conn.prepare_cached(&format!("SELECT {}", sql("?2", "?1")))?
        .query_row(params![prefix(org_unit), code], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_their_divisions_and_nothing_else() {
        let covers = within;
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

    #[test]
    fn a_county_covers_the_zones_it_hosts_and_a_zone_only_itself() {
        let conn = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(
            "CREATE TABLE units (code TEXT PRIMARY KEY, name TEXT, zone INTEGER, host TEXT);
             INSERT INTO units VALUES ('210171', '浑南高新区', 1, '210102'), ('210172', '市属开发区', 1, NULL),
                                      ('210103', '沈河区（改名）', 0, NULL);",
        )
        .unwrap();
        let c = |unit: &str, code: &str| covers(&conn, unit, code).unwrap();
        assert!(c("210102", "210171"), "the host county covers its zone");
        assert!(c("210102", "210102"));
        assert!(!c("210102", "210172"), "a city's own zone is not the county's");
        assert!(!c("210103", "210171"), "nor is the neighbour's");
        assert!(c("210171", "210171") && !c("210171", "210102"), "a zone covers only itself");
        assert!(c("210100", "210171") && c("210100", "210172") && c("210000", "210171") && c("000000", "210171"));
        assert!(!c("210102", "bad") && !c("bad", "210171"));
        // The SQL rule as a query's WHERE uses it.
        let listed = |unit: &str| -> Vec<String> {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT code FROM (SELECT '210102' AS code UNION ALL SELECT '210103' UNION ALL SELECT '210171'
                     UNION ALL SELECT '210172' UNION ALL SELECT '210202') WHERE {} ORDER BY code",
                    sql("code", "?1")
                ))
                .unwrap();
            stmt.query_map([prefix(unit)], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(listed("210102"), ["210102", "210171"]);
        assert_eq!(listed("210171"), ["210171"]);
        assert_eq!(listed("210100"), ["210102", "210103", "210171", "210172"]);
        assert_eq!(listed("000000").len(), 5);
    }
}
