"""Checks that /dev/kvm really works: hardware KVM that creates a VM and runs a tiny guest.

usage: kvm-check.py [-q] [--create-only]

Exit 0 if usable (prints a line unless -q), 1 otherwise (reason on stderr). A /dev/kvm node
can exist and still be useless for airlock: no permission, or a KVM flavour without hardware
virtualization. PVM ("kvm_pvm", Pagetable-based VM) accepts KVM_CREATE_VM and even runs tiny
guests, but an ordinary kernel under it has every access to its own memory emulated (booting
Debian's kernel takes minutes). So: the CPU must have vmx or svm, kvm_pvm must not be loaded,
and the check runs `mov dx,0x3f8; out dx,al; hlt` in real mode, expecting KVM_EXIT_IO on port
0x3f8 with the byte from AL, then KVM_EXIT_HLT. --create-only stops after KVM_CREATE_VM
(and skips the hardware checks).
"""

import ctypes
import fcntl
import mmap
import os
import signal
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46  # _IOW(0xAE, 0x46, 32 bytes)
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81  # struct kvm_regs: 144 bytes
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83  # struct kvm_sregs: 312 bytes
KVM_SET_SREGS = 0x4138AE84
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5

GUEST_MEM = 0x10000
CODE_GPA = 0x1000
CODE = bytes([0xBA, 0xF8, 0x03, 0xEE, 0xF4])  # mov dx,0x3f8; out dx,al; hlt
MARKER = 0x41


class Timeout(Exception):
    pass


def fail(msg):
    print(f"kvm-check: {msg}", file=sys.stderr)
    return 1


def run_guest(vm):
    mem = mmap.mmap(-1, GUEST_MEM, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mem[CODE_GPA : CODE_GPA + len(CODE)] = CODE
    host_addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    region = struct.pack("<IIQQQ", 0, 0, 0, GUEST_MEM, host_addr)
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)

    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    run_size = fcntl.ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)
    run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    sregs = bytearray(fcntl.ioctl(vcpu, KVM_GET_SREGS, bytes(312)))
    struct.pack_into("<Q", sregs, 0, 0)  # cs.base
    struct.pack_into("<H", sregs, 12, 0)  # cs.selector
    fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
    regs = bytearray(fcntl.ioctl(vcpu, KVM_GET_REGS, bytes(144)))
    struct.pack_into("<Q", regs, 0, MARKER)  # rax
    struct.pack_into("<Q", regs, 16 * 8, CODE_GPA)  # rip
    struct.pack_into("<Q", regs, 17 * 8, 0x2)  # rflags
    fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))

    def handler(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, handler)
    exits = []
    try:
        signal.alarm(5)
        for _ in range(2):
            fcntl.ioctl(vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("<I", run, 8)[0]
            exits.append(reason)
            if reason == KVM_EXIT_IO:
                direction, size, port, count, data_offset = struct.unpack_from("<BBHIQ", run, 32)
                if direction != 1 or port != 0x3F8 or size != 1 or run[data_offset] != MARKER:
                    return "guest exit IO did not match the test program"
            elif reason != KVM_EXIT_HLT:
                return f"unexpected exit reason {reason}"
            else:
                break
    except Timeout:
        return "the test guest did not exit within 5 s"
    finally:
        signal.alarm(0)
    if exits != [KVM_EXIT_IO, KVM_EXIT_HLT]:
        return f"unexpected exits {exits}"
    return None


def main():
    global kvm_fd
    quiet = "-q" in sys.argv[1:]
    create_only = "--create-only" in sys.argv[1:]
    if not create_only:
        if os.path.exists("/sys/module/kvm_pvm"):
            return fail("/dev/kvm is PVM (kvm_pvm loaded): ordinary guests run emulated")
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
        if "vmx" not in flags and "svm" not in flags:
            return fail("the CPU has no vmx/svm: no hardware virtualization")
    try:
        kvm_fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return fail(f"cannot open /dev/kvm: {e.strerror}")
    try:
        api = fcntl.ioctl(kvm_fd, KVM_GET_API_VERSION, 0)
        if api != 12:
            return fail(f"unexpected KVM API version {api}")
        vm = fcntl.ioctl(kvm_fd, KVM_CREATE_VM, 0)
        if not create_only:
            err = run_guest(vm)
            if err:
                return fail(f"/dev/kvm cannot run a guest: {err}")
    except OSError as e:
        return fail(f"/dev/kvm does not work: {e.strerror}")
    finally:
        os.close(kvm_fd)
    if not quiet:
        what = "KVM_CREATE_VM" if create_only else "a real-mode test guest ran (IO exit, HLT)"
        print(f"kvm-check: ok (api {api}, {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
