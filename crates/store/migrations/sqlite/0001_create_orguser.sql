-- The tutorial's table. AUTOINCREMENT keeps ids from being reused after a delete,
-- as PostgreSQL's SERIAL does, so both backends hand out ids the same way.
CREATE TABLE IF NOT EXISTS orguser (
    id       INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(255) NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS orguser_username ON orguser (username);
