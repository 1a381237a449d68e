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

-- 月调度 (monthly progress): each enterprise's standing at the end of every month of each
-- year of its list, computed with `enterprise_status` from the same records (derived, like
-- it): the visits of that month, the six-ones items first covered that month, and the
-- Table 1 columns counting the visits up to the month's end.
CREATE TABLE enterprise_monthly (
    credit_code             TEXT NOT NULL REFERENCES documents (id),
    year                    INTEGER NOT NULL,
    month                   INTEGER NOT NULL,   -- 1..12
    county_code             TEXT NOT NULL,
    visits                  INTEGER NOT NULL,
    items_completed         INTEGER NOT NULL,
    declared                INTEGER NOT NULL,
    detection_done          INTEGER NOT NULL,
    health_examination_done INTEGER NOT NULL,
    trained                 INTEGER NOT NULL,
    PRIMARY KEY (credit_code, year, month)
);
CREATE INDEX enterprise_monthly_by_month ON enterprise_monthly (year, month, county_code);
