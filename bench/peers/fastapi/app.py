"""The tutorial's API as a Python developer might write it today: FastAPI on uvicorn, with
one asyncpg pool per worker process (asyncpg prepares and caches each statement per
connection) and FastAPI's default JSON responses.

    GET /users/          every user ordered by id
    GET /users/{id}      one user, or 404

DATABASE_URL names the database (postgresql://orguser:123456@127.0.0.1:5432/orgdb by
default). Served with `uvicorn app:app --workers N`.
"""
import os
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Path

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://orguser:123456@127.0.0.1:5432/orgdb"
)
LIST_USERS = "SELECT id, username FROM orguser ORDER BY id"
ONE_USER = "SELECT id, username FROM orguser WHERE id = $1"


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.pool = await asyncpg.create_pool(DATABASE_URL)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/users/")
async def list_users():
    return [dict(row) for row in await app.state.pool.fetch(LIST_USERS)]


@app.get("/users/{user_id}")
async def get_user(user_id: int = Path(ge=1, le=2147483647)):
    row = await app.state.pool.fetchrow(ONE_USER, user_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no user with id {user_id}")
    return dict(row)
