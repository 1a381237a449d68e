-- Failed logins in the database (issue 14), so that the limit of five per username and
-- address in five minutes holds across every server process on one database and across
-- restarts. Rows older than the window are deleted as new failures arrive.
CREATE TABLE login_failures (
    username TEXT NOT NULL,  -- lower-cased
    address TEXT NOT NULL,   -- the client's IP address, '' when unknown
    at_ms INTEGER NOT NULL   -- Unix milliseconds
);
CREATE INDEX login_failures_by_name ON login_failures (username, address, at_ms);
CREATE INDEX login_failures_by_time ON login_failures (at_ms);
