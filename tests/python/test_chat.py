"""Black-box test of the switchboard binary with the python-socketio client.

Run from this folder:  python -m unittest -v test_chat
The binary is $SWITCHBOARD_BIN, default <repo>/target/debug/switchboard.
Needs: pip install -r requirements.txt
"""

import atexit
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

import jwt
import socketio

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.abspath(os.environ.get("SWITCHBOARD_BIN") or os.path.join(REPO, "target", "debug", "switchboard"))
READY_TIMEOUT = 15.0
WAIT = 3.0
NONE = 0.3

_running = []


@atexit.register
def _kill_all():
    for proc in _running:
        if proc.poll() is None:
            proc.kill()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Server:
    """The switchboard binary on free ports, with a clean environment."""

    def __init__(self, env=None):
        self.secret = secrets.token_hex(24)
        self.api_key = secrets.token_hex(16)
        self.overrides = env or {}
        self.proc = None
        self.log = None

    def start(self):
        if not os.path.exists(BIN):
            raise RuntimeError(
                f"switchboard binary not found at {BIN}: build it (cargo build -p switchboard) "
                "or point SWITCHBOARD_BIN at it"
            )
        self.port = _free_port()
        self.admin_port = _free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SWITCHBOARD_LISTEN": f"127.0.0.1:{self.port}",
            "SWITCHBOARD_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "SWITCHBOARD_JWT_SECRET": self.secret,
            "SWITCHBOARD_API_KEY": self.api_key,
            "SWITCHBOARD_LOG": "warn",
            "SWITCHBOARD_PRESENCE_INTERVAL": "50ms",
            **self.overrides,
        }
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        _running.append(self.proc)
        probe = f"{self.url}/socket.io/?EIO=4&transport=polling"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"switchboard ({BIN}) exited with {self.proc.returncode} before it was ready; "
                    f"output:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(probe, timeout=1) as res:
                    if res.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"switchboard ({BIN}) did not answer {probe} with 200 within {READY_TIMEOUT} s; "
                    f"output:\n{self.output()}"
                )
            time.sleep(0.05)

    def output(self):
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-8000:] or "(none)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.log is not None:
            self.log.close()
            self.log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def token(self, user, name=None, role="user"):
        claims = {"sub": user, "name": name or f"Name {user}", "role": role, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, self.secret, algorithm="HS256")


class Recorder:
    """Keeps every event a client receives; bounded waits on it."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event, *args):
        # With connection state recovery the server appends the offset as a
        # trailing argument: only the first argument is the payload.
        with self.cond:
            self.events.append((event, args[0] if args else None))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.events)

    def matching(self, event, pred=None, start=0):
        with self.cond:
            return [p for (e, p) in self.events[start:] if e == event and (pred is None or pred(p))]

    def wait_for(self, event, pred=None, timeout=WAIT, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [p for (e, p) in self.events[start:] if e == event and (pred is None or pred(p))]
                if got:
                    return got[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {event!r} within {timeout} s; events: {self.events!r:.800}")
                self.cond.wait(left)


class Case:
    """The tests, run once per transport by the subclasses below."""

    TRANSPORTS = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for sio in self.clients:
            try:
                sio.disconnect()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass

    def client(self, user=None, name=None, token="fresh", namespace="/"):
        user = user or uid("py")
        sio = socketio.Client(reconnection=False)
        rec = Recorder()
        sio.on("*", rec, namespace=namespace)
        errors = []
        sio.on("connect_error", lambda data=None: errors.append(data), namespace=namespace)
        auth = {} if token is None else {"token": self.server.token(user, name) if token == "fresh" else token}
        sio.user = user
        sio.rec = rec
        sio.errors = errors
        self.clients.append(sio)
        sio.connect(
            self.server.url,
            auth=auth,
            transports=self.TRANSPORTS,
            namespaces=[namespace],
            wait_timeout=5,
        )
        return sio

    def join(self, sio, room):
        self.assertEqual(sio.call("room:join", room, timeout=WAIT), {"ok": True})

    def test_transport_in_use(self):
        sio = self.client()
        self.assertEqual(sio.transport(), self.TRANSPORTS[0])

    def test_room_message_reaches_members_and_only_them(self):
        room = uid("room")
        a = self.client()
        b = self.client()
        outsider = self.client()
        self.join(a, room)
        self.join(b, room)
        self.join(outsider, uid("other-room"))
        start = outsider.rec.mark()

        t0 = time.time() * 1000
        payload = {"roomId": room, "text": "hello from python", "n": [1, 2]}
        self.assertEqual(a.call("room:message", payload, timeout=WAIT), {"ok": True})
        for member in (a, b):
            got = member.rec.wait_for("room:message", lambda p: isinstance(p, dict) and p.get("roomId") == room)
            self.assertEqual(got, {**payload, "sender": a.user, "timestamp": got["timestamp"]})
            self.assertIsInstance(got["timestamp"], (int, float))
            self.assertTrue(t0 - 5000 <= got["timestamp"] <= time.time() * 1000 + 5000)
        time.sleep(NONE)
        self.assertEqual(outsider.rec.matching("room:message", start=start), [])

        # and back the other way
        self.assertEqual(b.call("room:message", {"roomId": room, "text": "reply"}, timeout=WAIT), {"ok": True})
        got = a.rec.wait_for("room:message", lambda p: isinstance(p, dict) and p.get("text") == "reply")
        self.assertEqual(got["sender"], b.user)

    def test_non_member_is_refused(self):
        room = uid("room")
        a = self.client()
        intruder = self.client()
        self.join(a, room)
        start = a.rec.mark()
        self.assertEqual(
            intruder.call("room:message", {"roomId": room, "text": "x"}, timeout=WAIT), {"error": "not a member"}
        )
        time.sleep(NONE)
        self.assertEqual(a.rec.matching("room:message", start=start), [])

    def test_joiner_gets_history_and_others_are_told(self):
        room = uid("room")
        a = self.client()
        self.join(a, room)
        sent = a.call("message:send", {"roomId": room, "content": "stored"}, timeout=WAIT)
        self.assertIsInstance(sent.get("id"), str)
        b = self.client(name="Python B")
        self.join(b, {"roomId": room})
        history = b.rec.wait_for("room:history")
        self.assertEqual([(m["id"], m["content"]) for m in history], [(sent["id"], "stored")])
        self.assertEqual(a.rec.wait_for("room:user-joined"), {"userId": b.user, "roomId": room})

    def test_chat_message_goes_to_others_not_to_the_sender(self):
        a = self.client()
        b = self.client()
        mid = uid("m")
        self.assertEqual(a.call("chat:message", {"id": mid, "text": "hi"}, timeout=WAIT), {"ok": True})
        got = b.rec.wait_for("chat:message", lambda p: isinstance(p, dict) and p.get("id") == mid)
        self.assertEqual(got["sender"], a.user)
        self.assertEqual(
            a.rec.wait_for("chat:message:received", lambda p: p.get("id") == mid), {"id": mid, "status": "delivered"}
        )
        time.sleep(NONE)
        self.assertEqual(a.rec.matching("chat:message"), [])

    def test_no_token_is_refused(self):
        with self.assertRaises(socketio.exceptions.ConnectionError):
            self.client(token=None)
        sio = self.clients[-1]
        self.assertEqual([e.get("message") if isinstance(e, dict) else e for e in sio.errors], ["Authentication required"])

    def test_bad_token_is_refused(self):
        with self.assertRaises(socketio.exceptions.ConnectionError):
            self.client(token="not-a-jwt")
        sio = self.clients[-1]
        self.assertEqual([e.get("message") if isinstance(e, dict) else e for e in sio.errors], ["Invalid token"])


class WebSocketTest(Case, unittest.TestCase):
    TRANSPORTS = ["websocket"]


class PollingTest(Case, unittest.TestCase):
    TRANSPORTS = ["polling"]


if __name__ == "__main__":
    unittest.main()
