# Hostile link-layer traffic from inside a sandbox guest (run by tests/kvm/net_link_test.cc with
# Debian's python3 uploaded into the guest). Sends, on eth0 through an AF_PACKET socket, ARP
# spoofing and claims, gratuitous ARP, IPv6 router advertisements, neighbour discovery and
# pings to the host side's would-be link-local address, IPv4 with martian or spoofed addresses
# and source routes, VLAN tags and other ethertypes -- and records every frame the host side
# sends back. Prints "KEY value" lines and one "FRAME k=v ..." line per frame received from the
# host side; the test decides what is acceptable.
#
#   python3 link_tricks.py PHASE HOST_TRAP_PORT NS_TRAP_PORT
# PHASE "tricks" runs everything; "restore" only re-announces the guest's own MAC (the tricks
# include spoofing the guest's own address, which would leave the host side talking to a MAC
# nobody owns).
import select
import socket
import struct
import sys
import time

IFACE = "eth0"
ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q = 0x0003, 0x0800, 0x0806, 0x86DD, 0x8100
PACKET_OUTGOING = 4
GUEST_IP, HOST_IP = "10.213.0.2", "10.213.0.1"
FAKE_MAC = bytes.fromhex("020000000066")
BCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

phase = sys.argv[1]
host_trap = int(sys.argv[2])
ns_trap = int(sys.argv[3])

with open("/sys/class/net/%s/address" % IFACE) as f:
    OWN_MAC = bytes.fromhex(f.read().strip().replace(":", ""))
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
sock.bind((IFACE, 0))
sent = 0
received = []  # every frame from the host side, parsed


def mac_text(b):
    return ":".join("%02x" % x for x in b)


def send(dst, src, etype, payload):
    global sent
    frame = dst + src + struct.pack("!H", etype) + payload
    sock.send(frame.ljust(60, b"\0"))
    sent += 1


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, sha, socket.inet_aton(spa), tha,
                       socket.inet_aton(tpa))


def ipv4(src, dst, proto, payload, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 0x1234, 0, 64, proto,
                    0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def udp4(src, dst, sport, dport, data, options=b""):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, len(u))
    c = csum(pseudo + u) or 0xFFFF
    return ipv4(src, dst, 17, u[:6] + struct.pack("!H", c) + u[8:], options)


def syn4(src, dst, sport, dport):
    t = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(t))
    return ipv4(src, dst, 6, t[:16] + struct.pack("!H", csum(pseudo + t)) + t[18:])


def a6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def icmp6(src, dst, typ, code, body):
    m = struct.pack("!BBH", typ, code, 0) + body
    pseudo = a6(src) + a6(dst) + struct.pack("!I3xB", len(m), 58)
    m = m[:2] + struct.pack("!H", csum(pseudo + m)) + m[4:]
    return struct.pack("!IHBB16s16s", 0x60000000, len(m), 58, 255, a6(src), a6(dst)) + m


def udp6(src, dst, sport, dport, data):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = a6(src) + a6(dst) + struct.pack("!I3xB", len(u), 17)
    u = u[:6] + struct.pack("!H", csum(pseudo + u) or 0xFFFF) + u[8:]
    return struct.pack("!IHBB16s16s", 0x60000000, len(u), 17, 64, a6(src), a6(dst)) + u


def mcast_mac(addr6):
    return b"\x33\x33" + a6(addr6)[12:]


def link_local(mac):
    b = bytearray(mac[:3] + b"\xff\xfe" + mac[3:])
    b[0] ^= 2
    return "fe80::" + ":".join("%02x%02x" % (b[i], b[i + 1]) for i in range(0, 8, 2))


def solicited_node(addr6):
    return "ff02::1:ff" + "%02x:%02x%02x" % tuple(a6(addr6)[13:])


def parse(frame):
    dst, src, etype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    body = frame[14:]
    rec = {"src_mac": mac_text(src), "dst_mac": mac_text(dst), "ethertype": "0x%04x" % etype}
    if etype == ETH_P_ARP and len(body) >= 28:
        op, sha, spa, tha, tpa = struct.unpack("!6xH6s4s6s4s", body[:28])
        rec.update(kind="arp", op=op, sha=mac_text(sha), spa=socket.inet_ntoa(spa),
                   tpa=socket.inet_ntoa(tpa))
    elif etype == ETH_P_IP and len(body) >= 20:
        ihl = (body[0] & 15) * 4
        rec.update(kind="ipv4", proto=body[9], src=socket.inet_ntoa(body[12:16]),
                   dst=socket.inet_ntoa(body[16:20]))
        if body[9] == 6 and len(body) >= ihl + 14:
            rec.update(sport=struct.unpack("!H", body[ihl:ihl + 2])[0], flags=body[ihl + 13])
        if body[9] == 1 and len(body) > ihl:
            rec.update(icmp_type=body[ihl])
    elif etype == ETH_P_IPV6 and len(body) >= 40:
        rec.update(kind="ipv6", next_header=body[6],
                   src=socket.inet_ntop(socket.AF_INET6, body[8:24]),
                   dst=socket.inet_ntop(socket.AF_INET6, body[24:40]))
    else:
        rec.update(kind="other")
    return rec


def drain(seconds):
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        frame, addr = sock.recvfrom(65536)
        if addr[2] == PACKET_OUTGOING or len(frame) < 14:
            continue  # our own frames (the guest kernel's and this script's)
        received.append(parse(frame))


def report(extra):
    print("PHASE", phase)
    print("OWN_MAC", mac_text(OWN_MAC))
    for k, v in extra.items():
        print(k.upper(), v)
    print("SENT", sent)
    for r in received:
        print("FRAME " + " ".join("%s=%s" % kv for kv in sorted(r.items())))
    print("END")


def announce_own():
    # A request for the host's address from the guest's real MAC: the host side refreshes its
    # neighbour entry for GUEST_IP and answers with its own MAC.
    send(BCAST, OWN_MAC, ETH_P_ARP, arp(1, OWN_MAC, GUEST_IP, ZERO_MAC, HOST_IP))


announce_own()
drain(1.0)
host_mac = None
for r in received:
    if r.get("kind") == "arp" and r.get("op") == 2 and r["spa"] == HOST_IP:
        host_mac = bytes.fromhex(r["sha"].replace(":", ""))
if phase == "restore" or host_mac is None:
    report({"host_mac": host_mac and mac_text(host_mac)})
    sys.exit(0 if host_mac else 1)

G = GUEST_IP
# --- ARP: claim the gateway, claim other addresses, spoof the guest's own address ------------
send(BCAST, OWN_MAC, ETH_P_ARP, arp(1, OWN_MAC, HOST_IP, ZERO_MAC, HOST_IP))  # gratuitous
send(BCAST, FAKE_MAC, ETH_P_ARP, arp(2, FAKE_MAC, HOST_IP, BCAST, HOST_IP))   # gratuitous reply
send(host_mac, OWN_MAC, ETH_P_ARP, arp(2, OWN_MAC, HOST_IP, host_mac, HOST_IP))
for claimed in ["127.0.0.1", "192.0.2.1", "10.213.0.3", "10.213.0.0", "0.0.0.0",
                "169.254.169.254", "8.8.8.8"]:
    send(host_mac, FAKE_MAC, ETH_P_ARP, arp(2, FAKE_MAC, claimed, host_mac, HOST_IP))
    send(BCAST, FAKE_MAC, ETH_P_ARP, arp(1, FAKE_MAC, claimed, ZERO_MAC, HOST_IP))
# Who-has for addresses the host side must never answer for.
for target in ["127.0.0.1", "192.0.2.1", "10.213.0.3", "10.213.0.0", "169.254.169.254",
               "8.8.8.8", "224.0.0.1"]:
    send(BCAST, OWN_MAC, ETH_P_ARP, arp(1, OWN_MAC, G, ZERO_MAC, target))
# Another MAC claiming the guest's address (the host side may believe it: only the guest's own
# traffic is affected; announce_own() repairs it below).
send(BCAST, FAKE_MAC, ETH_P_ARP, arp(1, FAKE_MAC, G, ZERO_MAC, HOST_IP))
drain(0.5)

# --- IPv6: the host side has none; nothing may answer, learn a route or configure itself ------
own_ll = link_local(OWN_MAC)
fake_ll = link_local(FAKE_MAC)
host_ll = link_local(host_mac)
send(mcast_mac("ff02::1"), OWN_MAC, ETH_P_IPV6,
     icmp6(own_ll, "ff02::1", 128, 0, struct.pack("!HH", 7, 1) + b"airlock"))
send(mcast_mac("ff02::2"), OWN_MAC, ETH_P_IPV6,
     icmp6(own_ll, "ff02::2", 133, 0, b"\0" * 4 + struct.pack("!BB6s", 1, 1, OWN_MAC)))
# Router advertisement: default router, an autoconf prefix, an MTU, from a forged router.
ra = struct.pack("!BBHII", 64, 0, 1800, 0, 0)
ra += struct.pack("!BB6s", 1, 1, FAKE_MAC)
ra += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0, a6("2001:db8:1::"))
ra += struct.pack("!BBHI", 5, 1, 0, 1280)
ra += struct.pack("!BBBBI16s", 24, 3, 0, 0x18, 86400, a6("::"))  # route information: ::/0
for dst in ["ff02::1", host_ll]:
    dmac = mcast_mac(dst) if dst.startswith("ff") else host_mac
    send(dmac, FAKE_MAC, ETH_P_IPV6, icmp6(fake_ll, dst, 134, 0, ra))
# Neighbour solicitations for the host's would-be address (DAD-style and normal), and an
# unsolicited override advertisement for a router address.
for src in ["::", own_ll]:
    opt = b"" if src == "::" else struct.pack("!BB6s", 1, 1, OWN_MAC)
    send(mcast_mac(solicited_node(host_ll)), OWN_MAC, ETH_P_IPV6,
         icmp6(src, solicited_node(host_ll), 135, 0, b"\0" * 4 + a6(host_ll) + opt))
send(mcast_mac("ff02::1"), FAKE_MAC, ETH_P_IPV6,
     icmp6(fake_ll, "ff02::1", 136, 0,
           struct.pack("!I", 0xA0000000) + a6("fe80::1") + struct.pack("!BB6s", 2, 1, FAKE_MAC)))
# Unicast to the host side's would-be link-local address: ping, UDP to DNS and the trap ports.
send(host_mac, OWN_MAC, ETH_P_IPV6,
     icmp6(own_ll, host_ll, 128, 0, struct.pack("!HH", 7, 2) + b"airlock"))
for port in [53, 3128, ns_trap, host_trap]:
    send(host_mac, OWN_MAC, ETH_P_IPV6, udp6(own_ll, host_ll, 40000, port, b"ping"))
    send(host_mac, OWN_MAC, ETH_P_IPV6, udp6(own_ll, "::1", 40000, port, b"ping"))
drain(0.5)

# --- IPv4 with martian, spoofed or broadcast addresses, source routes -------------------------
for port in [ns_trap, host_trap]:
    for src in [G, "127.0.0.1", HOST_IP, "192.0.2.7"]:
        send(host_mac, OWN_MAC, ETH_P_IP, udp4(src, "127.0.0.1", 40001, port, b"ping"))
        send(host_mac, OWN_MAC, ETH_P_IP, syn4(src, "127.0.0.1", 40002, port))
        send(host_mac, FAKE_MAC, ETH_P_IP, syn4(src, "127.0.0.1", 40003, port))
    for dst in ["255.255.255.255", "10.213.0.3", "192.0.2.1", "224.0.0.1"]:
        dmac = {"255.255.255.255": BCAST, "10.213.0.3": BCAST,
                "224.0.0.1": bytes.fromhex("01005e000001")}.get(dst, host_mac)
        send(dmac, OWN_MAC, ETH_P_IP, udp4(G, dst, 40004, port, b"ping"))
    # Spoofed sources towards the host side's own address (the answers would go elsewhere).
    send(host_mac, OWN_MAC, ETH_P_IP, syn4("127.0.0.1", HOST_IP, 40005, port))
    send(host_mac, OWN_MAC, ETH_P_IP, syn4(HOST_IP, HOST_IP, 40006, port))
    # Loose and strict source routes via the host side to its loopback.
    for opt_type in [0x83, 0x89]:
        route = struct.pack("!BBB", opt_type, 7, 4) + socket.inet_aton("127.0.0.1") + b"\x01"
        send(host_mac, OWN_MAC, ETH_P_IP, udp4(G, HOST_IP, 40007, port, b"ping", route))
    # The same inside a VLAN tag, and as a frame the host would route (not for its address).
    send(host_mac, OWN_MAC, ETH_P_8021Q,
         struct.pack("!HH", 7, ETH_P_IP) + udp4(G, "127.0.0.1", 40008, port, b"ping"))
    send(host_mac, OWN_MAC, ETH_P_IP, udp4(G, "192.0.2.1", 40009, port, b"ping"))
# Other ethertypes: local experimental, LLDP, PPPoE discovery, wake-on-LAN, IPX, MPLS.
for etype in [0x88B5, 0x88CC, 0x8863, 0x0842, 0x8137, 0x8847]:
    send(host_mac, OWN_MAC, etype, b"\xaa" * 46)
    send(BCAST, FAKE_MAC, etype, b"\x55" * 46)
drain(2.0)

report({"host_mac": mac_text(host_mac), "fake_mac": mac_text(FAKE_MAC), "host_ll": host_ll})
