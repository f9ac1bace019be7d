"""Traffic from inside namespaces: ICMP echo with DF, a TCP stream, an underlay capture."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

from testkit.netns import Netns

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
ETH_P_ALL = 0x0003
VXLAN_PORT = 4789


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(ns: Netns, dst: str, size: int = 84, timeout: float = 2.0) -> bool:
    """One ICMP echo of `size` bytes of IP packet with DF set; True when the reply came.

    OSError (EMSGSIZE) when the packet cannot leave without fragmenting.
    """
    sock = ns.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        ident = os.getpid() & 0xFFFF
        seq = int(time.monotonic() * 1000) & 0xFFFF
        payload = bytes(i & 0xFF for i in range(size - 28))
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
        sock.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (src, _) = sock.recvfrom(65535)
            except TimeoutError:
                return False
            ihl = (data[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if src == dst and kind == 0 and rid == ident and rseq == seq:
                return len(data) == size and data[ihl + 8 :] == payload
        return False
    finally:
        sock.close()


def tcp_stream(src: Netns, dst: Netns, address: str, nbytes: int, timeout: float = 30.0) -> int:
    """Send `nbytes` over TCP from `src` to `address` in `dst`; the bytes that arrived."""
    server = dst.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(1)
    server.settimeout(timeout)
    port = server.getsockname()[1]
    got = {"n": 0}

    def receive() -> None:
        conn, _ = server.accept()
        conn.settimeout(timeout)
        with conn:
            while chunk := conn.recv(1 << 16):
                got["n"] += len(chunk)

    thread = threading.Thread(target=receive)
    thread.start()
    client = src.socket()
    client.settimeout(timeout)
    try:
        client.connect((address, port))
        block = b"x" * (1 << 16)
        sent = 0
        while sent < nbytes:
            client.sendall(block[: min(len(block), nbytes - sent)])
            sent += min(len(block), nbytes - sent)
        client.shutdown(socket.SHUT_WR)
        thread.join(timeout)
    finally:
        client.close()
        server.close()
    return got["n"]


class Capture:
    """Counts, on one underlay interface, VXLAN datagrams (UDP 4789) per VNI and the TCP
    segments that travel there unencapsulated."""

    def __init__(self, ns: Netns, ifname: str) -> None:
        self.sock = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.1)
        self.vxlan_bytes: dict[int, int] = {}
        self.vxlan_packets: dict[int, int] = {}
        self.bare_tcp_to: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _run(self) -> None:
        # Drain what is queued before stopping: only the kernel's own drops are lost.
        while True:
            try:
                frame = self.sock.recv(1 << 18)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            self._count(frame)

    def _count(self, frame: bytes) -> None:
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0800:
            ihl = (frame[14] & 0x0F) * 4
            proto, l4 = frame[23], 14 + ihl
            dst = socket.inet_ntop(socket.AF_INET, frame[30:34])
        elif ethertype == 0x86DD:
            proto, l4 = frame[20], 14 + 40
            dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        else:
            return
        if proto == 17 and struct.unpack("!H", frame[l4 + 2 : l4 + 4])[0] == VXLAN_PORT:
            vni = int.from_bytes(frame[l4 + 12 : l4 + 15], "big")
            self.vxlan_bytes[vni] = self.vxlan_bytes.get(vni, 0) + len(frame)
            self.vxlan_packets[vni] = self.vxlan_packets.get(vni, 0) + 1
        elif proto == 6:
            self.bare_tcp_to[dst] = self.bare_tcp_to.get(dst, 0) + 1
