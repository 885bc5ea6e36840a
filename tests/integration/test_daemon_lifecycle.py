"""The daemon's life around its units (issue 12 review findings), with the
real binary on loopback:

- two daemons given the same --state-dir (but different sockets) would
  share units.d; the second is refused, naming the first's pid;
- SIGTERM drains (a server unit with a stream open waits up to its
  drain_timeout); a second SIGTERM during that drain ends the daemon at
  once, and the next daemon on the same socket starts (stale socket taken
  over).

    python3 test_daemon_lifecycle.py --warren /path/to/warren [unittest args]
"""

import os
import signal
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warren_test as wt  # noqa: E402
from test_daemon import Daemon  # noqa: E402
import test_daemon_units  # noqa: E402


class LifecycleTest(test_daemon_units.UnitsTest):
    # UnitsTest's own tests are not run again here (None is not a test).
    for _name in [n for n in dir(test_daemon_units.UnitsTest) if n.startswith("test_")]:
        locals()[_name] = None
    del _name

    def test_a_shared_state_dir_is_refused(self):
        self.write_config(self.relay_section("r1", self.relay_port))
        first = self.start_daemon()
        other_sock = os.path.join(self.tmp, "run2", "control.sock")
        second = self.track(Daemon([wt.WARREN, "daemon", "--config", self.config, "--control", other_sock,
                                    "--state-dir", self.state]))
        self.assertEqual(second.wait_exit(), 1)
        self.assertIn("another warren daemon (pid %d) uses the state directory %s" % (first.pid, self.state),
                      second.stderr_text())
        self.assertIsNone(first.proc.poll())

    def test_second_sigterm_ends_a_long_drain(self):
        self.write_config(self.server_section().replace('allow = ["127.0.0.1"]',
                                                        'allow = ["127.0.0.1"]\ndrain_timeout = "60s"'))
        d = self.start_daemon()
        # A tunnel client outside the daemon holds a stream open through the server unit.
        client = self.track(wt.Process([wt.WARREN, "client", "ws://127.0.0.1:%d" % self.server_port, "--token-file",
                                        self.token, "-L", "127.0.0.1:%d:127.0.0.1:%d" % (self.client_port,
                                                                                         self.echo.port)]))
        client.wait_for(r"connected")
        s = wt.connect("127.0.0.1", self.client_port)
        s.sendall(b"ping")
        self.assertEqual(s.recv(4), b"ping")  # a stream is open through the server unit
        d.proc.send_signal(signal.SIGTERM)
        d.wait_for(r"daemon: SIGTERM received")
        # Draining: the open stream is still carried.
        s.sendall(b"pong")
        self.assertEqual(s.recv(4), b"pong")
        self.assertIsNone(d.proc.poll(), "the first SIGTERM drains; the stream keeps the server unit draining")
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0)
        self.assertIn("second SIGTERM received: exiting now", d.stderr_text())
        s.close()
        again = self.start_daemon()  # the socket the killed daemon left is taken over
        self.assertIsNone(again.proc.poll())


if __name__ == "__main__":
    wt.main()
