"""The tutorial's API in Falcon: every user, and one user by id, as JSON.

    GET /users/          [{"id": 1, "username": "e60202a4"}, ...] ordered by id
    GET /users/{id}      {"id": 7, "username": "952ba94f"}, or 404

Rows go through peewee's model_to_dict and json.dumps, as in the tutorial; only the
Falcon 4 names differ (falcon.App, resp.text). Served by gunicorn: `gunicorn app:api`.
"""
import json

import falcon
from playhouse.shortcuts import model_to_dict

from models import OrgUser


class UserList:
    def on_get(self, req, resp):
        users = OrgUser.select().order_by(OrgUser.id)
        resp.text = json.dumps([model_to_dict(user) for user in users])


class SingleUser:
    def on_get(self, req, resp, user_id):
        try:
            user = OrgUser.get(OrgUser.id == user_id)
        except OrgUser.DoesNotExist:
            raise falcon.HTTPNotFound()
        resp.text = json.dumps(model_to_dict(user))


api = falcon.App()
api.add_route("/users/", UserList())
# The int converter answers 404 for ids that are not numbers or do not fit the column.
api.add_route("/users/{user_id:int(min=1, max=2147483647)}", SingleUser())
