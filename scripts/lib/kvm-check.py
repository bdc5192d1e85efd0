"""Checks that /dev/kvm really works: opens it, asks the API version, creates a VM.

usage: kvm-check.py [-q]     exit 0 if usable (prints a line unless -q), 1 otherwise (reason
on stderr). A /dev/kvm node can exist and still fail (no hardware virtualization, no
permission), so existence alone proves nothing.
"""

import fcntl
import os
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01


def main():
    quiet = "-q" in sys.argv[1:]
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        print(f"kvm-check: cannot open /dev/kvm: {e.strerror}", file=sys.stderr)
        return 1
    try:
        api = fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0)
        if api != 12:
            print(f"kvm-check: unexpected KVM API version {api}", file=sys.stderr)
            return 1
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        os.close(vm)
    except OSError as e:
        print(f"kvm-check: /dev/kvm does not work: {e.strerror}", file=sys.stderr)
        return 1
    finally:
        os.close(kvm)
    if not quiet:
        print(f"kvm-check: ok (api {api}, KVM_CREATE_VM succeeded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
