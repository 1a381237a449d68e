-- Org units by name (issue 12). The names of the administrative divisions are embedded in
-- the binary (`server/data/divisions.tsv`); this table holds only what an admin changed:
-- a renamed division, a unit the data set lacks, and development zones.

CREATE TABLE units (
    code       TEXT PRIMARY KEY,               -- 6 digits, inside its city's code range
    name       TEXT NOT NULL,
    -- A development zone (开发区) that is not an administrative division: 其他 on the tables,
    -- a row of its own in Table 2, its target set by the city.
    zone       INTEGER NOT NULL DEFAULT 0,
    host       TEXT,                           -- a zone's host county, when it has one
    target     INTEGER,                        -- a zone's assisted-enterprise target; NULL = not set
    updated_at INTEGER NOT NULL
);

-- Programme deadlines per province (`MM-DD`); a province without a row has the plan's
-- defaults (the list by 07-30, the completion summary by 11-15).
CREATE TABLE province_deadlines (
    province    TEXT PRIMARY KEY,              -- PP0000
    list_due    TEXT NOT NULL,
    summary_due TEXT NOT NULL
);
