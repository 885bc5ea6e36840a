"""What `cmake --install` ships (issue 12): the binary, the systemd unit and
the example config, and the unit checked by systemd's own tool:

- `cmake --install BUILD --prefix TMP` installs exactly bin/warren,
  lib/systemd/system/warren.service and share/doc/warren/warren.toml.example;
  the example is what `warren config example` prints and passes
  `warren config check`; the unit's ExecStart is the configured prefix's
  bin/warren;
- `systemd-analyze verify` accepts the unit (its ExecStart pointed at the
  built binary; skipped with a reason without systemd-analyze), and it holds
  the settings the daemon relies on: Type=notify, the directories its root
  defaults use, the hardening.

    python3 test_install.py --warren build/release/warren --build-dir build/release
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402

BUILD_DIR = ""


def unit_settings(text):
    """The unit file's [Service] (and other) settings: {key: [values]}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def configured_prefix():
    with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_INSTALL_PREFIX:"):
                return line.split("=", 1)[1].strip()
    raise AssertionError("no CMAKE_INSTALL_PREFIX in the cache")


class InstallTest(wt.WarrenTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="warren-install-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_install_lists_the_three_files(self):
        prefix = os.path.join(self.tmp, "prefix")
        r = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        found = sorted(os.path.relpath(os.path.join(d, f), prefix) for d, _, fs in os.walk(prefix) for f in fs)
        self.assertEqual(found, ["bin/warren", "lib/systemd/system/warren.service",
                                 "share/doc/warren/warren.toml.example"])
        self.assertTrue(os.access(os.path.join(prefix, "bin/warren"), os.X_OK))

        example = os.path.join(prefix, "share/doc/warren/warren.toml.example")
        printed = subprocess.run([wt.WARREN, "config", "example"], capture_output=True, text=True, timeout=30)
        self.assertEqual(printed.returncode, 0, printed.stderr)
        with open(example) as f:
            self.assertEqual(f.read(), printed.stdout, "the installed example is `warren config example`")
        check = subprocess.run([wt.WARREN, "config", "check", example], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        with open(os.path.join(prefix, "lib/systemd/system/warren.service")) as f:
            unit = unit_settings(f.read())
        self.assertEqual(unit["ExecStart"], [os.path.join(configured_prefix(), "bin", "warren") + " daemon"])

    def test_unit_file(self):
        with open(os.path.join(BUILD_DIR, "warren.service")) as f:
            text = f.read()
        unit = unit_settings(text)
        one = {k: v[-1] for k, v in unit.items()}
        self.assertEqual(one["Type"], "notify")
        self.assertEqual(one["NotifyAccess"], "main")
        self.assertEqual(one["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(one["Restart"], "on-failure")
        self.assertIn("WatchdogSec", one)
        # The daemon's defaults as root: /run/warren/control.sock (0700
        # directory), /etc/warren/warren.toml, /var/lib/warren
        # (tests/cli/defaults_test.cpp checks the code's side).
        self.assertEqual(one["RuntimeDirectory"], "warren")
        self.assertEqual(one["RuntimeDirectoryMode"], "0700")
        self.assertEqual(one["StateDirectory"], "warren")
        self.assertEqual(one["ConfigurationDirectory"], "warren")
        for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                           ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"),
                           ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
                           ("ProtectControlGroups", "yes"), ("LockPersonality", "yes"),
                           ("MemoryDenyWriteExecute", "yes"), ("SystemCallArchitectures", "native"),
                           ("SystemCallFilter", "@system-service"),
                           ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
                           ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                           ("AmbientCapabilities", "CAP_NET_BIND_SERVICE")]:
            self.assertEqual(one.get(key), value, key)
        self.assertIn("/dev/net/tun", text, "the TUN note for issue 13")

        tool = shutil.which("systemd-analyze")
        if not tool:
            self.skipTest("systemd-analyze is not installed (Debian: the systemd package)")
        # verify checks that ExecStart exists: point it at the built binary.
        unit_path = os.path.join(self.tmp, "warren.service")
        with open(unit_path, "w") as f:
            f.write("\n".join(("ExecStart=%s daemon" % wt.WARREN) if l.startswith("ExecStart=") else l
                              for l in text.splitlines()) + "\n")
        r = subprocess.run([tool, "verify", "--man=no", unit_path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Warnings about this unit (unknown keys, bad values) fail it too.
        for line in (r.stdout + r.stderr).splitlines():
            self.assertNotIn("warren.service", line, r.stdout + r.stderr)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--build-dir" in args:
        i = args.index("--build-dir")
        BUILD_DIR = os.path.abspath(args[i + 1])
        del sys.argv[i + 1:i + 3]
    if not BUILD_DIR or not os.path.isfile(os.path.join(BUILD_DIR, "CMakeCache.txt")):
        print("error: pass --build-dir BUILD (a configured build directory)", file=sys.stderr)
        sys.exit(2)
    wt.main()
