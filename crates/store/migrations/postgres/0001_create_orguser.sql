-- The tutorial's table, exactly as peewee creates it for `OrgUser(username = CharField(unique=True))`,
-- so Peregrine can serve a database the Python app made (IF NOT EXISTS keeps that table as it is).
CREATE TABLE IF NOT EXISTS orguser (
    id       SERIAL       NOT NULL PRIMARY KEY,
    username VARCHAR(255) NOT NULL
);
-- peewee names the unique index <table>_<column>; the same name means no second index.
CREATE UNIQUE INDEX IF NOT EXISTS orguser_username ON orguser (username);
