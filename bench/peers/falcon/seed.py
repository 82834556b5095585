"""Makes `orguser` hold exactly N users with ids 1..N (default 20), so every server in a
benchmark reads the same rows and /users/7 exists.

The tutorial's generate_users() adds one row per INSERT and can draw a name twice (with
10,000 rows a collision is likely), so the table is refilled in one transaction from a set
of distinct names instead. Nothing changes when the table already holds ids 1..N.
"""
import sys

from peewee import fn

from models import OrgUser, database, init_tables, new_username


def holds_exactly(count):
    rows = OrgUser.select().count()
    highest = OrgUser.select(fn.MAX(OrgUser.id)).scalar() or 0
    return rows == count and highest == count


def refill(count):
    names = set()
    while len(names) < count:
        names.add(new_username())
    names = list(names)
    with database.atomic():
        database.execute_sql("TRUNCATE orguser RESTART IDENTITY")
        for start in range(0, count, 1000):
            batch = [{"username": name} for name in names[start:start + 1000]]
            OrgUser.insert_many(batch).execute()
    database.execute_sql("ANALYZE orguser")


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    init_tables()
    if holds_exactly(count):
        print(f"orguser already holds ids 1..{count}")
        return
    refill(count)
    print(f"orguser now holds ids 1..{count}")


if __name__ == "__main__":
    main()
