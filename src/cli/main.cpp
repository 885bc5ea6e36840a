// warren: entry point. Parses the command line with CLI11, sets up logging
// and runs one subcommand. Every failure a user can cause ends in one line
// "warren: error: ..." and a non-zero exit code, never a stack trace.
#include "cli/command.hpp"
#include "core/log.hpp"

#include <csignal>
#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  // Writes to a peer that has gone (including splice(2), which cannot take
  // MSG_NOSIGNAL) must fail with EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"warren: network tunnel toolkit", "warren"};
  app.set_version_flag("--version", "warren 0.1.0");
  app.require_subcommand(1);
  auto run_relay = warren::cli::add_relay_command(app);
  auto run_server = warren::cli::add_server_command(app);
  auto run_client = warren::cli::add_client_command(app);
  auto run_tun = warren::cli::add_tun_command(app);
  auto run_config = warren::cli::add_config_command(app);
  auto run_daemon = warren::cli::add_daemon_command(app);
  auto run_ctl = warren::cli::add_ctl_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) // --help, --version
      return app.exit(e);
    std::fprintf(stderr, "warren: error: %s\nRun 'warren --help' or 'warren SUBCOMMAND --help' for usage.\n", e.what());
    return 2;
  }

  try {
    if (app.got_subcommand("relay"))
      return run_relay();
    if (app.got_subcommand("server"))
      return run_server();
    if (app.got_subcommand("client"))
      return run_client();
    if (app.got_subcommand("tun"))
      return run_tun();
    if (app.got_subcommand("config"))
      return run_config();
    if (app.got_subcommand("daemon"))
      return run_daemon();
    if (app.got_subcommand("ctl"))
      return run_ctl();
  } catch (const std::exception& e) { // user_error among them
    // Under journald the line carries its priority as the logger's do.
    std::fprintf(stderr, "%swarren: error: %s\n", warren::log::stderr_is_journal() ? "<3>" : "", e.what());
    return 1;
  }
  return 0;
}
