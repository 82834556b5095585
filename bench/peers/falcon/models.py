"""The tutorial's data layer: a peewee model of the `orguser` table and its two helpers.

The connection settings come from ORGDB_* variables (the tutorial hard-coded orgdb,
orguser, 123456 on 127.0.0.1:5432, which stay the defaults), so the benchmark can point
the app at its own private PostgreSQL.
"""
import os
import uuid

from peewee import CharField, Model, PostgresqlDatabase

database = PostgresqlDatabase(
    os.environ.get("ORGDB_NAME", "orgdb"),
    user=os.environ.get("ORGDB_USER", "orguser"),
    password=os.environ.get("ORGDB_PASSWORD", "123456"),
    host=os.environ.get("ORGDB_HOST", "127.0.0.1"),
    port=int(os.environ.get("ORGDB_PORT", "5432")),
)


class OrgUser(Model):
    """One user: the implicit auto-increment `id` and a unique `username`."""

    username = CharField(unique=True)

    class Meta:
        database = database
        table_name = "orguser"


def init_tables():
    """Creates the table unless it exists."""
    database.create_tables([OrgUser], safe=True)


def new_username():
    """A name as the tutorial makes them: the first 8 hex digits of a random UUIDv4."""
    return str(uuid.uuid4())[:8]


def generate_users(count):
    """Adds `count` users one INSERT at a time, as the tutorial does."""
    for _ in range(count):
        OrgUser.create(username=new_username())
