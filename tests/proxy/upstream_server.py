#!/usr/bin/python3
"""Local upstream for the proxy tests: HTTP or HTTPS on 127.0.0.1, HTTP/1.1 keep-alive.

GET/POST /echo           -> JSON {method, path, headers, body} of the request as received
GET /bytes?n=N           -> N bytes of 'x' (Content-Length)
GET /chunked?n=N&c=C     -> N bytes in C chunks (Transfer-Encoding: chunked)
GET /say?text=T          -> T as the body (Content-Length), to test redaction; POST /say
                            echoes the request body; &header=1 also sends T as header X-Said
GET /status?code=C       -> empty response with status C (204/304 have no body)
GET /drop-on-reuse       -> answered on a fresh connection; closed unanswered on a reused one
GET /ws                  -> WebSocket echo (RFC 6455 handshake, text/binary frames echoed)
Prints "port <n>" on stdout once listening.
"""
import argparse, base64, hashlib, json, socket, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

LOG = None
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def send_body(self, status, body, ctype="text/plain", extra_headers=()):
        self.send_response(status)
        for name, value in extra_headers:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        body = self.read_body()
        self.served = getattr(self, "served", 0) + 1
        if url.path == "/drop-on-reuse" and self.served > 1:
            # Like a server closing an idle keep-alive connection just as a request arrives.
            self.close_connection = True
            return
        if LOG:
            with open(LOG, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "peer_port": self.client_address[1],
                                    "headers": [[k, v] for k, v in self.headers.items()],
                                    "body": body.decode("latin-1")}) + "\n")
        if url.path == "/ws":
            return self.websocket()
        if url.path == "/bytes":
            return self.send_body(200, b"x" * int(q["n"][0]))
        if url.path == "/say":
            text = q.get("text", [""])[0]
            extra = [("X-Said", text)] if q.get("header") == ["1"] else []
            return self.send_body(200, body or text.encode(), extra_headers=extra)
        if url.path == "/status":
            code = int(q["code"][0])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/chunked":
            n, c = int(q["n"][0]), int(q.get("c", ["4"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = b"y" * n
            step = max(1, n // c)
            for i in range(0, n, step):
                part = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        echo = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        self.send_body(200, json.dumps(echo).encode(), "application/json")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        if "auth=1" in self.path:
            # Echo the credential the upgrade request carried, as a first text message, split
            # over two fragments (a redactor must follow values across fragments).
            auth = self.headers.get("Authorization", "").encode()
            half = len(auth) // 2
            self.wfile.write(bytes([0x01, 126]) + half.to_bytes(2, "big") + auth[:half])
            rest = auth[half:]
            self.wfile.write(bytes([0x80, 126]) + len(rest).to_bytes(2, "big") + rest)
        self.wfile.flush()
        rf = self.rfile
        while True:
            head = rf.read(2)
            if len(head) < 2:
                return
            opcode = head[0] & 0x0F
            masked = head[1] & 0x80
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(rf.read(2), "big")
            elif n == 127:
                n = int.from_bytes(rf.read(8), "big")
            mask = rf.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(rf.read(n)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                self.close_connection = True
                return
            out = bytes([0x80 | opcode])
            if len(data) < 126:
                out += bytes([len(data)])
            else:
                out += bytes([126]) + len(data).to_bytes(2, "big")
            self.wfile.write(out + data)
            self.wfile.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--log", help="append every request as a JSON line")
    args = ap.parse_args()
    global LOG
    LOG = args.log
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((args.bind, args.port), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("port", srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
