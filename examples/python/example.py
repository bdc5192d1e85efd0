"""airlock from Python: run a command, give the guest a secret it only sees as a placeholder,
and watch a request to a host outside allow_net be refused."""
import sys

import airlock

REAL_KEY = "sk-example-0123456789abcdef-not-real"


def main() -> int:
    with airlock.Sandbox(allow_net=["api.example.com"],
                         secrets={"API_KEY": (REAL_KEY, ["api.example.com"])},
                         boot_timeout=240) as sb:
        r = sb.sh("echo hello from $(uname -s) $(uname -r)")
        assert r.exit_code == 0, r
        print("command:", r.text())
        seen = sb.sh('printf %s "$API_KEY"').text()
        print("guest sees API_KEY=" + seen)
        if not seen or REAL_KEY in seen:
            print("the guest saw the real key or nothing", file=sys.stderr)
            return 1
        out = sb.sh('wget -q -O /dev/null http://example.org/ 2>&1; echo " exit=$?"').text()
        print("request to example.org:", out)
        if "403" not in out or "exit=0" in out:
            print("expected the proxy's 403 for example.org", file=sys.stderr)
            return 1
    print("EXAMPLE ok command=ok secret=placeholder egress=refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
