"""Scenario "Rocket.Chat REST": PyPI rocketchat-api 3.7.x, unmodified, against
roomd's /api/v1 door, with a DDP client (PyPI websocket-client, DDP spoken by
hand) subscribed to the room.

- `RocketChat(user_id=…, auth_token=…, server_url=…)` signs in with headers;
  `me()`;
- alice creates a channel and sets its join code; bob joins without the
  code (error-code-required), with a wrong one (error-code-invalid), with
  the right one;
- `channels_info` by id and by name, `chat_post_message`,
  `chat_send_message`, `channels_history`, `channels_members`,
  `channels_leave`;
- the DDP client sees bob's `uj`, his two messages and his `ul`, in order;
- a bad token is refused with 401.
"""

import json
import os
import sys
import time
import traceback

import websocket
from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketBadStatusCodeException,
)
from rocketchat_API.rocketchat import RocketChat

DDP_URL = os.environ["ROOMD_URL"]
HTTP_URL = DDP_URL.replace("ws://", "http://").removesuffix("/websocket")
ALICE_ID = os.environ["RC_REST_ALICE_ID"]
ALICE_TOKEN = os.environ["RC_REST_ALICE_TOKEN"]
BOB_ID = os.environ["RC_REST_BOB_ID"]
BOB_TOKEN = os.environ["RC_REST_BOB_TOKEN"]
WAIT = 5.0


def rc(user_id, token):
    return RocketChat(user_id=user_id, auth_token=token, server_url=HTTP_URL, timeout=10)


def step(name, fn):
    print(f"  - {name} ...", end=" ", flush=True)
    started = time.monotonic()
    try:
        value = fn()
    except Exception:
        print("FAILED", flush=True)
        raise
    print(f"ok ({int((time.monotonic() - started) * 1000)}ms)", flush=True)
    return value


def expect_api_error(fn, status, error_type):
    try:
        r = fn()
    except RocketApiException as e:
        assert e.status_code == status, (e.status_code, e.response)
        assert e.error_type == error_type, e.response
        assert e.error.endswith(f"[{error_type}]"), e.response
        return
    raise AssertionError(f"expected {error_type}, got {r}")


class Ddp:
    """A DDP client over websocket-client: connect, login, sub, read frames."""

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=WAIT)
        self.seen = []
        self.next_id = 0
        self.send({"msg": "connect", "version": "1", "support": ["1"]})
        self.wait(lambda f: f.get("msg") == "connected", "connected")

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def read(self):
        frame = json.loads(self.ws.recv())
        if frame.get("msg") == "ping":
            self.send({"msg": "pong", **({"id": frame["id"]} if "id" in frame else {})})
        self.seen.append(frame)
        return frame

    def wait(self, pred, what):
        deadline = time.monotonic() + WAIT
        for f in self.seen:
            if pred(f):
                return f
        while time.monotonic() < deadline:
            f = self.read()
            if pred(f):
                return f
        raise AssertionError(f"timed out waiting for {what}; seen {self.seen[-10:]}")

    def call(self, method, *params):
        self.next_id += 1
        mid = str(self.next_id)
        self.send({"msg": "method", "id": mid, "method": method, "params": list(params)})
        r = self.wait(lambda f: f.get("msg") == "result" and f.get("id") == mid, f"result of {method}")
        assert "error" not in r, r
        return r.get("result")

    def sub(self, name, *params):
        self.next_id += 1
        sid = str(self.next_id)
        self.send({"msg": "sub", "id": sid, "name": name, "params": list(params)})
        self.wait(lambda f: f.get("msg") == "ready" and sid in f.get("subs", []), f"ready of {name}")

    def room_messages(self, rid):
        return [
            f["fields"]["args"][0]
            for f in self.seen
            if f.get("msg") == "changed"
            and f.get("collection") == "stream-room-messages"
            and f["fields"].get("eventName") == rid
        ]


def main():
    print("scenario rc-rest")
    alice = rc(ALICE_ID, ALICE_TOKEN)
    bob = rc(BOB_ID, BOB_TOKEN)
    name = f"rest-interop-{int(time.time() * 1000)}"
    state = {}

    def me():
        m = alice.me()
        assert m["success"] is True and m["_id"] == ALICE_ID and m["username"] == "rest-alice", m

    step("me() with X-Auth-Token / X-User-Id", me)

    def create():
        r = alice.channels_create(name)
        assert r["success"] is True, r
        ch = r["channel"]
        assert ch["name"] == name and ch["t"] == "c" and isinstance(ch["code"], str), ch
        state["rid"] = ch["_id"]

    step("channels_create", create)
    rid = state["rid"]

    ddp = Ddp(DDP_URL)

    def watch():
        ddp.call("login", {"resume": ALICE_TOKEN})
        ddp.sub("stream-room-messages", rid, False)

    step("a DDP client subscribes to the room", watch)

    def set_code():
        r = alice.channels_set_join_code(rid, "87hsyi9")
        assert r["success"] is True and r["channel"]["joinCodeRequired"] is True, r

    step("channels_set_join_code", set_code)

    step(
        "bob joins without the code: error-code-required",
        lambda: expect_api_error(lambda: bob.channels_join(rid, None), 400, "error-code-required"),
    )
    step(
        "bob joins with a wrong code: error-code-invalid",
        lambda: expect_api_error(lambda: bob.channels_join(rid, "nope"), 400, "error-code-invalid"),
    )
    step(
        "bob may not set the join code: 403",
        lambda: expect_api_error(
            lambda: bob.channels_set_join_code(rid, "x"), 403, "error-action-not-allowed"
        ),
    )

    def join():
        r = bob.channels_join(rid, "87hsyi9")
        assert r["success"] is True and r["channel"]["usersCount"] == 2, r

    step("bob joins with the code", join)

    def info():
        by_id = bob.channels_info(room_id=rid)
        by_name = bob.channels_info(channel=name)
        assert by_id["channel"]["_id"] == rid == by_name["channel"]["_id"], (by_id, by_name)
        assert by_id["channel"]["usersCount"] == 2, by_id

    step("channels_info by id and by name", info)

    def post():
        r = bob.chat_post_message("hello from rocketchat-api", room_id=rid)
        assert r["success"] is True and r["message"]["msg"] == "hello from rocketchat-api", r
        r = bob.chat_send_message({"rid": rid, "msg": "second", "_id": "rest-interop-msg-2"})
        assert r["success"] is True and r["message"]["_id"] == "rest-interop-msg-2", r

    step("chat_post_message, chat_send_message", post)

    def history():
        msgs = [m["msg"] for m in bob.channels_history(rid) if not m.get("t")]
        assert msgs[:2] == ["second", "hello from rocketchat-api"], msgs

    step("channels_history (paged by the library)", history)

    def members():
        names = sorted(u["username"] for u in alice.channels_members(room_id=rid))
        assert names == ["rest-alice", "rest-bob"], names

    step("channels_members (paged by the library)", members)

    def leave():
        r = bob.channels_leave(rid)
        assert r["success"] is True and r["channel"]["usersCount"] == 1, r

    step("channels_leave", leave)

    def ddp_saw():
        ddp.wait(
            lambda f: f.get("msg") == "changed"
            and f["fields"]["args"][0].get("t") == "ul",
            "ul of bob",
        )
        seen = [
            (m.get("t") or m["msg"])
            for m in ddp.room_messages(rid)
            if m["u"]["_id"] == BOB_ID
        ]
        assert seen == ["uj", "hello from rocketchat-api", "second", "ul"], seen

    step("the DDP client saw uj, both messages and ul, in order", ddp_saw)

    def bad_token():
        mallory = rc(BOB_ID, "not-a-token")
        try:
            mallory.channels_info(room_id=rid)
        except RocketBadStatusCodeException as e:
            assert e.status_code == 401, e.response
            assert json.loads(e.response) == {
                "status": "error",
                "message": "You must be logged in to do this.",
            }, e.response
            return
        raise AssertionError("a bad token was accepted")

    step("a bad token is refused with 401", bad_token)
    ddp.ws.close()
    print("PASS [rc-rest]")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        print("\nFAIL [rc-rest]", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
