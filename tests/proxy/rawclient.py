#!/usr/bin/python3
"""Raw client for proxy tests: optional CONNECT, optional TLS (with or without SNI), then sends
stdin bytes verbatim and prints what comes back (latin-1). Exit 0 always; prints
"TLS-ERROR <reason>" if the handshake fails, "CONNECT-STATUS <line>" for CONNECT answers.
--hello-segment N sends the TLS ClientHello in N-byte TCP segments, 10 ms apart."""
import argparse, socket, ssl, sys, time


def trickled_hello_tls(sock, ctx, sni, segment):
    """TLS over `sock` whose ClientHello leaves in `segment`-byte TCP segments (the record
    header, the handshake header and the SNI extension all arrive cut); the rest of the
    handshake runs normally on a socket wrapped once the ClientHello is out."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    for i in range(0, len(hello), segment):
        sock.sendall(hello[i:i + segment])
        time.sleep(0.01)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            d = sock.recv(65536)
            if not d:
                raise OSError("closed during the handshake")
            incoming.write(d)
    if outgoing.pending:
        sock.sendall(outgoing.read())
    return BioSocket(sock, tls, incoming, outgoing)


class BioSocket:
    """The sendall/recv the rest of this script uses, over a memory-BIO TLS object."""

    def __init__(self, sock, tls, incoming, outgoing):
        self.sock, self.tls, self.incoming, self.outgoing = sock, tls, incoming, outgoing

    def sendall(self, data):
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                d = self.sock.recv(65536)
                if not d:
                    return b""
                self.incoming.write(d)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""


ap = argparse.ArgumentParser()
ap.add_argument("--proxy", required=True)
ap.add_argument("--connect")
ap.add_argument("--tls", action="store_true")
ap.add_argument("--sni")
ap.add_argument("--cafile")
ap.add_argument("--timeout", type=float, default=5)
ap.add_argument("--hello-segment", type=int, default=0)
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
        if args.hello_segment:
            s = trickled_hello_tls(s, ctx, args.sni, args.hello_segment)
        else:
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
