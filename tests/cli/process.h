// Runs the tapeloop binary as a child process for CLI tests: its stdout and stderr are read
// through pipes, and it can be signalled and reaped.
#ifndef TAPELOOP_TESTS_CLI_PROCESS_H_
#define TAPELOOP_TESTS_CLI_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

namespace tapeloop::testing {

inline std::string TapeloopBinary() { return std::string(TAPELOOP_BINARY_DIR) + "/bin/tapeloop"; }

class Process {
 public:
  explicit Process(std::vector<std::string> args) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]);
      close(err[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Process() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (out_ >= 0) close(out_);
    if (err_ >= 0) close(err_);
  }

  // Reads stdout until a line containing `needle` arrives or the timeout passes; returns the
  // line ("" on timeout or EOF).
  std::string WaitForLine(const std::string& needle, std::chrono::seconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      size_t nl;
      while ((nl = stdout_.find('\n')) != std::string::npos) {
        std::string line = stdout_.substr(0, nl);
        stdout_.erase(0, nl + 1);
        seen_ += line + "\n";
        if (line.find(needle) != std::string::npos) return line;
      }
      // A quiet 100 ms is not the end (a sanitizer build starts slowly); end of file is.
      if (Read(out_, &stdout_, 100) == ReadResult::kEof) break;
    }
    return "";
  }

  void Signal(int sig) { kill(pid_, sig); }

  // Waits for exit, draining both pipes; returns the exit code (128+signal when killed).
  int Wait() {
    while (ReadSome(out_, &stdout_, 50) || ReadSome(err_, &stderr_, 50)) {
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    while (ReadSome(out_, &stdout_, 0) || ReadSome(err_, &stderr_, 0)) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Reads both pipes until both reach end of file (the child exited or closed them), then
  // reaps the child and returns its exit code as Wait() does. A child still running after
  // `timeout` is killed (SIGKILL) and -1 is returned. Unlike Wait(), never leaves output in a
  // full pipe while blocking in waitpid, so children that print a lot cannot stall.
  int Finish(std::chrono::seconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    bool out_open = true, err_open = true;
    while ((out_open || err_open) && std::chrono::steady_clock::now() < end) {
      if (out_open) out_open = Read(out_, &stdout_, 10) != ReadResult::kEof;
      if (err_open) err_open = Read(err_, &stderr_, 10) != ReadResult::kEof;
    }
    if (out_open || err_open) {
      kill(pid_, SIGKILL);
      Wait();
      return -1;
    }
    return Wait();
  }

  // True while the child has not exited (it is not reaped here).
  bool Alive() const {
    if (pid_ <= 0 || reaped_) return false;
    siginfo_t info{};
    return waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
  }

  std::string all_stdout() const { return seen_ + stdout_; }
  const std::string& stderr_text() const { return stderr_; }
  pid_t pid() const { return pid_; }

 private:
  // Reads what is available within `ms`; false at EOF or when nothing arrived.
  enum class ReadResult { kData, kQuiet, kEof };

  // Waits up to `ms` for data on `fd`; appends what arrives.
  static ReadResult Read(int fd, std::string* into, int ms) {
    if (fd < 0) return ReadResult::kEof;
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, ms);
    if (ready < 0) return errno == EINTR ? ReadResult::kQuiet : ReadResult::kEof;
    if (ready == 0) return ReadResult::kQuiet;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return ReadResult::kQuiet;
    if (n <= 0) return ReadResult::kEof;
    into->append(buf, n);
    return ReadResult::kData;
  }

  static bool ReadSome(int fd, std::string* into, int ms) {
    return Read(fd, into, ms) == ReadResult::kData;
  }

  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  bool reaped_ = false;
  std::string stdout_, stderr_, seen_;
};

// A finished `tapeloop` run: exit code (-1 if it was killed at the timeout), stdout, stderr.
struct CliResult {
  int code;
  std::string out, err;
};

// Runs `tapeloop ARGS...` to completion (killed after `timeout`).
inline CliResult RunCli(std::vector<std::string> args,
                        std::chrono::seconds timeout = std::chrono::seconds(300)) {
  args.insert(args.begin(), TapeloopBinary());
  Process p(args);
  const int code = p.Finish(timeout);
  return {code, p.all_stdout(), p.stderr_text()};
}

}  // namespace tapeloop::testing

#endif  // TAPELOOP_TESTS_CLI_PROCESS_H_
