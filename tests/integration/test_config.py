"""Integration tests of `warren config check|example` with the real binary:

- the annotated example passes check (exit 0, the one-line summary);
- a file with several errors reports each with its line:column, exit 1;
- an unknown key gets a did-you-mean; an inline secret is refused without
  its value ever appearing in the output; a name used twice; wrong types;
- a file that does not exist, a directory and an unreadable file (as
  another uid when root, through setpriv) each get their own line;
- no FILE: $XDG_CONFIG_HOME/warren/warren.toml; `warren config` without
  check/example is a usage error (exit 2).

No network: nothing is started.

    python3 test_config.py --warren /path/to/warren [unittest args]
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


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="warren-config-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_warren(self, *args, env=None, prefix=()):
        return subprocess.run(list(prefix) + [wt.WARREN] + list(args), capture_output=True, text=True, timeout=30,
                              env=env)

    def write(self, name, text, mode=0o644):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_example_passes_check(self):
        ex = self.run_warren("config", "example")
        self.assertEqual(ex.returncode, 0, ex.stderr)
        self.assertIn("[[client]]", ex.stdout)
        self.assertIn("# ", ex.stdout, "the example is annotated")
        path = self.write("warren.toml", ex.stdout)
        r = self.run_warren("config", "check", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), path + ": 3 units: relay web, client office, server gw")
        self.assertEqual(r.stderr, "")

    def test_every_error_with_its_position(self):
        secret = "s3cr3t-" + os.urandom(8).hex()
        path = self.write("bad.toml", "\n".join([
            '[[client]]',                          # 1
            'name = "office"',                     # 2
            'url = "wss://gw.example:8443"',       # 3
            'tokn_file = "/etc/warren/t"',         # 4
            'token = "%s"' % secret,               # 5
            'local = ["localhost:2222:h:22"]',     # 6
            'ping_interval = 15',                  # 7
            '',                                    # 8
            '[[client]]',                          # 9
            'name = "office"',                     # 10
            'url = "wss://gw.example:8443"',       # 11
            'dynamic = "1080"',                    # 12
            'insecure-token = "yes"',              # 13
            '',                                    # 14
            '[[server]]',                          # 15
            'name = "gw"',                         # 16
            'max_clients = "many"',                # 17
            'family = "ipv5"',                     # 18
            'proxy_password = "%s"' % secret,      # 19
            '',                                    # 20
            '[[relay]]',                           # 21
            'listen = "localhost:8080"',           # 22
            'target = "127.0.0.1:80"',             # 23
            '',
        ]))
        r = self.run_warren("config", "check", path)
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout + r.stderr
        self.assertNotIn(secret, out, "a secret is never echoed")
        expect = [
            (4, 1, "unknown key 'tokn_file' in [[client]]; did you mean `token_file`?"),
            (5, 1, "token: secrets are not written in the config; put it in a file and use token_file"),
            (7, 17, 'ping_interval must be a "string", not an integer'),
            (10, 8, "the name office is taken (line 1); unit names are unique"),
            (13, 18, "insecure_token is a flag: true or false, not a string"),
            (17, 15, "max_clients must be an integer, not a string"),
            (18, 10, "family must be one of auto, prefer-ipv4, ipv4, ipv6"),
            (19, 1, "put it in a file and use"),
            (21, 1, "[[relay]] without a name"),
        ]
        lines = r.stderr.splitlines()
        for line, column, what in expect:
            with self.subTest(line=line):
                prefix = "%s:%d:%d: " % (path, line, column)
                self.assertTrue(any(l.startswith(prefix) and what in l for l in lines),
                                "no %r in:\n%s" % (prefix + what, r.stderr))
        self.assertIn("warren: %d errors in %s" % (len(expect), path), r.stderr)

    def test_syntax_error_names_its_position(self):
        path = self.write("syntax.toml", '[[client]]\nname = "a"\nurl = "wss://x\n')
        r = self.run_warren("config", "check", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(path + ":3:7: a string that does not end on its line", r.stderr)

    def test_files_that_cannot_be_read(self):
        missing = os.path.join(self.tmp, "missing.toml")
        r = self.run_warren("config", "check", missing)
        self.assertEqual((r.returncode, r.stderr.strip()), (1, "warren: error: %s: no such file" % missing))
        r = self.run_warren("config", "check", self.tmp)
        self.assertEqual((r.returncode, r.stderr.strip()),
                         (1, "warren: error: %s: is a directory, not a config file" % self.tmp))
        private = self.write("private.toml", '[[relay]]\nname = "x"\n', mode=0o600)
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                self.skipTest("setpriv not installed")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        else:
            os.chmod(private, 0)
            prefix = []
        r = self.run_warren("config", "check", private, prefix=prefix)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr.strip(), r"^warren: error: %s: permission denied \(cannot read it as uid \d+\)$"
                         % private)

    def test_default_path_and_usage(self):
        if os.geteuid() == 0:
            default = "/etc/warren/warren.toml"
        else:
            default = os.path.join(self.tmp, "warren", "warren.toml")
        env = dict(os.environ, XDG_CONFIG_HOME=self.tmp)
        r = self.run_warren("config", "check", env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn(default + ":", r.stderr)
        if os.geteuid() != 0:
            os.makedirs(os.path.dirname(default))
            with open(default, "w") as f:
                f.write(self.run_warren("config", "example").stdout)
            r = self.run_warren("config", "check", env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_warren("config")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    wt.main()
