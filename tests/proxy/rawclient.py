#!/usr/bin/python3
"""Raw client for proxy tests: optional CONNECT, optional TLS (with or without SNI), then sends
stdin bytes verbatim and prints what comes back (latin-1). Exit 0 always; prints
"TLS-ERROR <reason>" if the handshake fails, "CONNECT-STATUS <line>" for CONNECT answers."""
import argparse, socket, ssl, sys

ap = argparse.ArgumentParser()
ap.add_argument("--proxy", required=True)
ap.add_argument("--connect")
ap.add_argument("--tls", action="store_true")
ap.add_argument("--sni")
ap.add_argument("--cafile")
ap.add_argument("--timeout", type=float, default=5)
args = ap.parse_args()
host, port = args.proxy.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=args.timeout)
if args.connect:
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (args.connect.encode(), args.connect.encode()))
    resp = b""
    while b"\r\n\r\n" not in resp:
        d = s.recv(4096)
        if not d:
            break
        resp += d
    line = resp.split(b"\r\n")[0].decode("latin-1")
    print("CONNECT-STATUS", line, flush=True)
    if " 200 " not in line:
        sys.exit(0)
if args.tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.cafile)
    if not args.sni:
        ctx.check_hostname = False
    try:
        s = ctx.wrap_socket(s, server_hostname=args.sni)
    except (ssl.SSLError, OSError) as e:
        print("TLS-ERROR", e, flush=True)
        sys.exit(0)
data = sys.stdin.buffer.read()
s.sendall(data)
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except (socket.timeout, ssl.SSLError, OSError):
    pass
sys.stdout.write(out.decode("latin-1"))
