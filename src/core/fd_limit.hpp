// Descriptor budgets. Every socket, pipe and file a command holds counts
// against RLIMIT_NOFILE, and a peer decides how many sockets we hold (one per
// connection, per UDP source address, per stream). Out of descriptors,
// accept() and socket() fail for everyone, the tunnel's own redial included,
// so each command raises its soft limit to the hard one at start and sizes
// its tables so that they fill up before the descriptors do: what a table
// may hold is what fits under the limit after a reserve for everything else
// (listeners, the tunnel, lookups, Happy Eyeballs' racing sockets, logs).
// fit_in_descriptors() is pure and unit-tested; raise_fd_limit() is the one
// place that touches the limit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace warren {

/// The open-file limit in effect after raise_fd_limit(), and the one before.
/// 0 when it could not be read (then nothing is sized by it).
struct fd_limit {
  std::uint64_t before = 0;
  std::uint64_t now = 0;
};

/// Raises the soft limit on open files to the hard limit (the usual soft
/// limit, 1,024, is what one client may open by default).
fd_limit raise_fd_limit();

/// Descriptors kept free for everything a table does not count: an eighth
/// of the limit, at least 16 and at most 256.
constexpr std::uint64_t fd_reserve(std::uint64_t limit) {
  return std::clamp<std::uint64_t>(limit / 8, 16, 256);
}

/// How many entries costing `per_entry` descriptors each a table may hold
/// under `limit` with fd_reserve() kept free: at most `wanted`, at least 1
/// (a limit too low for even that is the operator's to raise; the command
/// says so). A limit of 0 (unknown) leaves `wanted` as it is.
constexpr std::size_t fit_in_descriptors(std::uint64_t limit, std::size_t per_entry, std::size_t wanted) {
  if (limit == 0 || per_entry == 0)
    return wanted;
  const std::uint64_t reserve = fd_reserve(limit);
  const std::uint64_t room = limit > reserve ? (limit - reserve) / per_entry : 0;
  return static_cast<std::size_t>(std::clamp<std::uint64_t>(room, 1, std::max<std::uint64_t>(wanted, 1)));
}

/// Counts the descriptors a command holds for its peers (accepted
/// connections, per-client sockets) against a bound: take() hands out a
/// ticket while fewer than max() are held, and a ticket gives its descriptor
/// back when it is destroyed. Tickets share the count, so they may outlive
/// the budget. max 0: no bound. Not thread-safe.
class fd_budget {
  struct state {
    std::size_t max;
    std::size_t held;
  };

 public:
  class ticket {
   public:
    ticket(ticket&&) noexcept = default;
    ticket& operator=(ticket&& other) noexcept {
      give_back();
      state_ = std::move(other.state_);
      return *this;
    }
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { give_back(); }

   private:
    friend class fd_budget;
    explicit ticket(std::shared_ptr<state> s) : state_(std::move(s)) { ++state_->held; }
    void give_back() {
      if (state_)
        --state_->held;
      state_.reset();
    }
    std::shared_ptr<state> state_;
  };

  explicit fd_budget(std::size_t max = 0) : state_(std::make_shared<state>(state{max, 0})) {}

  std::optional<ticket> take() {
    if (state_->max != 0 && state_->held >= state_->max)
      return std::nullopt;
    return ticket(state_);
  }
  std::size_t held() const { return state_->held; }
  std::size_t max() const { return state_->max; }

 private:
  std::shared_ptr<state> state_;
};

} // namespace warren
