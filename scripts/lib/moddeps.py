"""Resolves kernel modules and their dependencies into a load order.

usage: moddeps.py MODULES_DIR NAME...

MODULES_DIR is a lib/modules/<ver> tree with modules.dep (fetch-kernel.sh runs depmod).
Prints one path per line, relative to MODULES_DIR, dependencies before their users, each
module once. A NAME that is built into the kernel (modules.builtin) is reported on stderr and
skipped; a NAME that is neither is an error. Soft "pre" dependencies (modules.softdep, e.g.
ext4 -> crypto-crc32c) are followed when they name a module or an alias with a module.
"""

import os
import sys


def norm(name):
    return name.replace("-", "_")


def modname(path):
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            return norm(base[: -len(ext)])
    return norm(base)


def main():
    if len(sys.argv) < 3:
        print("usage: moddeps.py MODULES_DIR NAME...", file=sys.stderr)
        return 2
    moddir, names = sys.argv[1], sys.argv[2:]

    deps, path_of = {}, {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            path_of[modname(path)] = path
            deps[path] = rest.split()

    builtin = set()
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {modname(line.strip()) for line in f if line.strip()}

    aliases = {}
    alias_file = os.path.join(moddir, "modules.alias")
    if os.path.exists(alias_file):
        with open(alias_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "alias":
                    aliases.setdefault(parts[1], []).append(norm(parts[2]))

    softpre = {}
    soft_file = os.path.join(moddir, "modules.softdep")
    if os.path.exists(soft_file):
        with open(soft_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[0] == "softdep" and parts[2] == "pre:":
                    pre = []
                    for p in parts[3:]:
                        if p == "post:":
                            break
                        pre.append(p)
                    softpre[norm(parts[1])] = pre

    wanted = {norm(n) for n in names}
    order, seen = [], set()

    def visit(path, stack):
        if path in seen:
            return
        if path in stack:
            raise SystemExit(f"moddeps: dependency cycle at {path}")
        stack.add(path)
        name = modname(path)
        for soft in softpre.get(name, []):
            # An alias may have several providers (crypto-crc32c: crc32c_intel, crc32c_generic):
            # one the caller asked for wins, else the first with a module file.
            providers = [norm(soft)] + aliases.get(soft, [])
            providers = [p for p in providers if p in path_of]
            chosen = [p for p in providers if p in wanted] or providers[:1]
            for p in chosen[:1]:
                visit(path_of[p], stack)
        # modules.dep lists the deepest dependency last; visiting each first is enough.
        for dep in deps[path]:
            visit(dep, stack)
        stack.discard(path)
        seen.add(path)
        order.append(path)

    status = 0
    for name in names:
        n = norm(name)
        if n in path_of:
            visit(path_of[n], set())
        elif n in builtin:
            print(f"moddeps: {name} is built into the kernel", file=sys.stderr)
        else:
            print(f"moddeps: {name}: no such module in {moddir}", file=sys.stderr)
            status = 1
    if status == 0:
        print("\n".join(order))
    return status


if __name__ == "__main__":
    sys.exit(main())
