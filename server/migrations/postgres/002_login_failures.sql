-- Failed logins in the database (issue 14; SQLite's 015_login_failures.sql), so that the
-- limit of five per username and address in five minutes holds across every server process
-- on this database and across restarts.
CREATE TABLE login_failures (
    username TEXT NOT NULL,
    address TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX login_failures_by_name ON login_failures (username, address, at_ms);
CREATE INDEX login_failures_by_time ON login_failures (at_ms);
