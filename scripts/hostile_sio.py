#!/usr/bin/env python3
"""Hostile clients on the Socket.IO door, beside the same on DDP (issue 17).

Starts target/release/roomd (or $ROOMD) on a free port for each run and
prints one line per run: RSS of roomd (VmRSS, sampled every 0.25 s), what
roomd_connections_closed_total counted, and when.

  scripts/hostile_sio.py slow DOOR N [MSGS]  N guests (sio|ddp) join a meeting room
                                             and never read; a signed-in host
                                             sends MSGS messages of 5 kB
  scripts/hostile_sio.py churn DOOR N        N sockets: CONNECT (sio `40`, ddp
                                             `connect`), then dropped at once,
                                             with --max-connections 20
  scripts/hostile_sio.py attach N            N guests send `451-[…]` then up to
                                             150 binary frames of 60 kB
"""
import base64, json, os, re, socket, struct, subprocess, sys, time

BIN = os.environ.get("ROOMD", "target/release/roomd")
SECRET = "s3cret"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


class Server:
    def __init__(self, *flags):
        self.port = free_port()
        env = dict(os.environ, ROOMD_JWT_SECRET=SECRET, RUST_LOG="warn")
        self.p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{self.port}", "--in-memory",
                                   "--no-rate-limits", *flags], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port)).close(); break
            except OSError:
                time.sleep(0.05)
        self.t0 = time.time(); self.peak = 0

    def rss(self):
        for l in open(f"/proc/{self.p.pid}/status"):
            if l.startswith("VmRSS"):
                mib = int(l.split()[1]) / 1024; self.peak = max(self.peak, mib); return mib

    def metrics(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while True:
            d = s.recv(65536)
            if not d: break
            body += d
        return body.decode(errors="replace")

    def sample(self, name):
        total = 0.0
        for l in self.metrics().splitlines():
            if l.startswith(name):
                total += float(l.rsplit(" ", 1)[1])
        return total

    def closed(self):
        out = {}
        for m in re.finditer(r'roomd_connections_closed_total\{[^}]*reason="([a-z_]+)"[^}]*\} ([0-9.e+]+)', self.metrics()):
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
        return {k: int(v) for k, v in out.items() if v}

    def stop(self):
        self.p.terminate(); self.p.wait()


def ws(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    return s, s.makefile("rb")


def frame(data, opcode=1):
    if isinstance(data, str): data = data.encode()
    m = os.urandom(4); n = len(data)
    hdr = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                    if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
    return hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(data))


def read(f):
    h = f.read(2); n = h[1] & 127
    if n == 126: n = struct.unpack(">H", f.read(2))[0]
    elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
    return h[0] & 15, f.read(n)


def ddp(port):
    s, f = ws(port, "/websocket")
    s.sendall(frame(json.dumps({"msg": "connect", "version": "1", "support": ["1"]}))); read(f)
    return s, f


def call(s, f, method, params, i):
    s.sendall(frame(json.dumps({"msg": "method", "method": method, "id": str(i), "params": params})))
    while True:
        op, d = read(f)
        m = json.loads(d)
        if m.get("msg") == "ping": s.sendall(frame('{"msg":"pong"}'))
        if m.get("msg") == "result" and m.get("id") == str(i):
            assert "error" not in m, m
            return m.get("result")


def sio(port):
    s, f = ws(port, "/socket.io/?EIO=4&transport=websocket")
    read(f)  # open
    s.sendall(frame("40"))
    while read(f)[1][:2] != b"40": pass
    return s, f


def host(srv):
    tok = subprocess.check_output([BIN, "token", "--user-id", "host", "--username", "host",
                                   "--jwt-secret", SECRET]).decode().strip()
    s, f = ddp(srv.port)
    call(s, f, "login", [{"resume": tok}], "l")
    room = call(s, f, "createPrivateGroup", ["big", [], False, {}, {"guestAccess": True}], "c")
    return s, f, room["_id"], room["code"]


def slow(door, n, msgs=1200):
    srv = Server()
    hs, hf, rid, code = host(srv)
    guests = []
    for i in range(n):
        if door == "sio":
            s, f = sio(srv.port)
            s.sendall(frame("420" + json.dumps(["join-room", {"code": code, "guestName": f"g{i}"}])))
            while not read(f)[1].startswith(b"430"): pass
        else:
            s, f = ddp(srv.port)
            call(s, f, "join-room", [{"code": code, "guestName": f"g{i}"}], "j")
            # DDP members hear a room's messages through its stream.
            s.sendall(frame(json.dumps({"msg": "sub", "id": "s", "name": "stream-room-messages",
                                        "params": [rid, False]})))
            while json.loads(read(f)[1]).get("msg") != "ready": pass
        guests.append(s)  # never read from here on
    base = srv.rss(); cut_at = None; text = "x" * 5000; srv.t0 = time.time()
    for i in range(0, msgs, 50):
        for j in range(i, min(i + 50, msgs)):
            hs.sendall(frame(json.dumps({"msg": "method", "method": "sendMessage", "id": f"m{j}",
                                         "params": [{"rid": rid, "msg": text}]})))
        last = f"m{min(i + 50, msgs) - 1}"
        while True:
            m = json.loads(read(hf)[1])
            if m.get("msg") == "ping": hs.sendall(frame('{"msg":"pong"}'))
            if m.get("msg") == "result" and m.get("id") == last: break
        srv.rss()
        if cut_at is None and srv.closed().get("slow_consumer", 0) >= n:
            cut_at = time.time() - srv.t0
    flood = time.time() - srv.t0
    t_end = time.time() + 15
    while time.time() < t_end and srv.closed().get("slow_consumer", 0) < n:
        srv.rss(); time.sleep(0.25)
    if cut_at is None and srv.closed().get("slow_consumer", 0) >= n:
        cut_at = time.time() - srv.t0
    print(f"slow {door} n={n} msgs={msgs}: rss before flood {base:.0f} MiB, peak {srv.peak:.0f} MiB, "
          f"after {srv.rss():.0f} MiB; closed {srv.closed()}; all cut "
          f"{'%.1f s into the flood' % cut_at if cut_at else 'NOT within 15 s after the flood'} (flood took {flood:.1f} s); "
          f"open {srv.sample('roomd_connections{'):.0f}")
    srv.stop()


def churn(door, n):
    srv = Server("--max-connections", "20")
    base = srv.rss()
    for i in range(n):
        if door == "sio":
            s, f = ws(srv.port, "/socket.io/?EIO=4&transport=websocket"); read(f); s.sendall(frame("40"))
        else:
            s, f = ws(srv.port, "/websocket")
            s.sendall(frame(json.dumps({"msg": "connect", "version": "1", "support": ["1"]})))
        # Destroyed (a reset); the file from makefile() holds the socket too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); f.close(); s.close()
        if i % 100 == 0: srv.rss()
    # Every slot should come back at once; wait for the gauge, bounded.
    t_end = time.time() + 30
    while srv.sample('roomd_connections{') > 0 and time.time() < t_end:
        time.sleep(0.25)
    settle = 30 - (t_end - time.time())
    still_open = srv.sample('roomd_connections{')
    closed = srv.closed()
    ok = True
    try:
        (sio if door == "sio" else ddp)(srv.port)
    except Exception:
        ok = False
    print(f"churn {door} n={n}: rss {base:.0f} -> {srv.rss():.0f} MiB (peak {srv.peak:.0f}); "
          f"open {still_open:.0f} of 20 slots {settle:.1f} s after; new client admitted: {ok}; "
          f"closed {closed}")
    srv.stop()


def attach(n):
    srv = Server()
    hs, hf, rid, code = host(srv)
    base = srv.rss(); socks = []; sent = 0
    for i in range(n):
        s, f = sio(srv.port)
        s.sendall(frame("420" + json.dumps(["join-room", {"code": code, "guestName": f"a{i}"}])))
        while not read(f)[1].startswith(b"430"): pass
        s.sendall(frame('451-["send-message",{"msg":{"_placeholder":true,"num":0}}]'))
        try:
            for _ in range(150):
                s.sendall(frame(b"\0" * 60000, opcode=2)); sent += 1
        except OSError:
            pass
        socks.append(s); srv.rss()
    time.sleep(2)
    print(f"attach n={n}: rss {base:.0f} -> peak {srv.peak:.0f}, {srv.rss():.0f} MiB 2 s after; "
          f"binary frames the server took before closing: {sent} of {150 * n}; closed {srv.closed()}")
    srv.stop()


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "slow": slow(sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))
    elif what == "churn": churn(sys.argv[2], int(sys.argv[3]))
    elif what == "attach": attach(int(sys.argv[2]))
