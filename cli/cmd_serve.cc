// tapeloop serve --listen HOST:PORT --db PATH
// Serves the gRPC API until SIGINT or SIGTERM, then shuts down cleanly (in-flight calls get a
// grace period, the database is closed). Start-up errors print one line and exit with code 2.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <thread>

#include "cli/args.h"
#include "cli/command.h"
#include "server/server.h"

namespace tapeloop::cli {
namespace {

int RunServe(int argc, char** argv) {
  Args args(argc, argv, {"help"});
  if (args.Bool("help")) {
    std::cout << "usage: tapeloop serve [--listen 127.0.0.1:7070] [--db tapeloop.db]\n"
                 "                      [--api-keys-file F | --api-key KEY=PRINCIPAL,...]\n"
                 "                      [--tls-cert PEM --tls-key PEM] [--models-dir DIR]\n"
                 "                      [--max-sessions N] [--idle-timeout SECONDS]\n"
                 "                      [--max-evaluations N]\n"
                 "  --listen         HOST:PORT to serve gRPC on (port 0 picks a free port);\n"
                 "                   without API keys only loopback addresses are allowed\n"
                 "  --db             SQLite database file (created if absent)\n"
                 "  --api-keys-file  lines of `KEY PRINCIPAL`; callers send\n"
                 "                   `authorization: Bearer KEY`\n"
                 "  --tls-cert/key   serve TLS from these PEM files\n"
                 "  --models-dir     directory of models to serve, one subdirectory each\n"
                 "                   (default: models)\n"
                 "  --max-sessions   open engine sessions per principal (default 1024)\n"
                 "  --idle-timeout   default idle timeout of sessions, in seconds (600)\n"
                 "  --max-evaluations  evaluation runs playing at once (default 1, at most 64)\n";
    return 0;
  }
  server::ServerOptions options;
  options.listen = args.String("listen", options.listen);
  options.db_path = args.String("db", options.db_path);
  options.tls_cert_path = args.String("tls-cert", "");
  options.tls_key_path = args.String("tls-key", "");
  options.models_dir = args.String("models-dir", options.models_dir);
  auto max_sessions = args.Int("max-sessions", options.limits.max_sessions_per_principal);
  if (!max_sessions.ok()) return Fail("serve", max_sessions.status(), 2);
  if (*max_sessions < 1 || *max_sessions > 1000000) {
    return Fail("serve", absl::InvalidArgumentError("--max-sessions must be in 1..1000000"), 2);
  }
  options.limits.max_sessions_per_principal = static_cast<int>(*max_sessions);
  auto idle = args.Int("idle-timeout", options.limits.default_idle_timeout.count());
  if (!idle.ok()) return Fail("serve", idle.status(), 2);
  if (*idle < 1 || *idle > options.limits.max_idle_timeout.count()) {
    return Fail("serve", absl::InvalidArgumentError("--idle-timeout must be in 1..86400 seconds"),
                2);
  }
  options.limits.default_idle_timeout = std::chrono::seconds(*idle);
  auto max_evaluations = args.Int("max-evaluations", options.max_running_evaluations);
  if (!max_evaluations.ok()) return Fail("serve", max_evaluations.status(), 2);
  if (*max_evaluations < 1 || *max_evaluations > 64) {
    return Fail("serve", absl::InvalidArgumentError("--max-evaluations must be in 1..64"), 2);
  }
  options.max_running_evaluations = static_cast<int>(*max_evaluations);
  if (auto file = args.Get("api-keys-file")) {
    auto keys = server::ApiKeys::FromFile(*file);
    if (!keys.ok()) return Fail("serve", keys.status(), 2);
    options.api_keys.Merge(*keys);
  }
  if (auto flag = args.Get("api-key")) {
    auto keys = server::ApiKeys::FromFlag(*flag);
    if (!keys.ok()) return Fail("serve", keys.status(), 2);
    options.api_keys.Merge(*keys);
  }
  if (auto status = args.Finish(); !status.ok()) return Fail("serve", status, 2);

  // SIGINT / SIGTERM are turned into a byte on a pipe (the only async-signal-safe way to wake a
  // thread); a waiter thread reads it and shuts the server down. Handlers, unlike a sigwait on
  // blocked signals, work whichever thread the kernel delivers the signal to.
  static int signal_pipe[2] = {-1, -1};
  if (pipe(signal_pipe) != 0) return Fail("serve", absl::InternalError("pipe() failed"), 1);
  struct sigaction action = {};
  action.sa_handler = [](int sig) {
    unsigned char b = static_cast<unsigned char>(sig);
    ssize_t ignored = write(signal_pipe[1], &b, 1);
    (void)ignored;
  };
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  auto server = server::Server::Start(options);
  if (!server.ok()) return Fail("serve", server.status(), 2);
  std::cout << "tapeloop serve: listening on "
            << options.listen.substr(0, options.listen.rfind(':')) << ":" << (*server)->port()
            << " (db " << options.db_path << ", models " << options.models_dir << ")" << std::endl;

  std::thread waiter([&] {
    unsigned char sig = 0;
    while (read(signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    std::cout << "tapeloop serve: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", shutting down"
              << std::endl;
    (*server)->Shutdown();
  });
  (*server)->Wait();
  waiter.join();
  std::cout << "tapeloop serve: stopped" << std::endl;
  return 0;
}

}  // namespace

TAPELOOP_REGISTER_COMMAND("serve", "serve the gRPC API (sessions, agents, tools, evaluation)",
                          RunServe);

}  // namespace tapeloop::cli
