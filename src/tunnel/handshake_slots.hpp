// handshake_slots: bounds the connections the server holds before they have
// authenticated, in all and per source, as sshd's MaxStartups does. Until its
// token checks out a connection costs the server a descriptor and TLS and
// HTTP state for up to the handshake timeout (10 s), and anyone who can reach
// the port can open one; without a bound, a few thousand connections that
// never finish (slow-loris) would use up descriptors and memory and lock real
// clients out. With it, one source holds at most `per_source` of them and all
// sources together `total`; a connection over either bound is closed at once.
// A source is an IPv4 address or an IPv6 /64 (what one host is usually
// given); an IPv4-mapped IPv6 address counts as its IPv4 address.
// Pure bookkeeping, tested without sockets. Not thread-safe.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <utility>

namespace warren::tunnel {

class handshake_slots {
 public:
  using source_key = boost::asio::ip::address_v6::bytes_type;

  /// A slot held; given back when the ticket is destroyed or released.
  class ticket {
   public:
    ticket(ticket&& other) noexcept : slots_(std::exchange(other.slots_, nullptr)), key_(other.key_) {}
    ticket& operator=(ticket&& other) noexcept;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { release(); }
    void release();

   private:
    friend class handshake_slots;
    ticket(handshake_slots* slots, const source_key& key) : slots_(slots), key_(key) {}
    handshake_slots* slots_;
    source_key key_;
  };

  /// Both bounds are at least 1.
  handshake_slots(std::size_t total, std::size_t per_source)
      : total_(std::max<std::size_t>(total, 1)), per_source_(std::max<std::size_t>(per_source, 1)) {}

  /// A slot for a connection from `source`, or nothing if the bound for all
  /// or for that source is reached. The slots must outlive their tickets.
  std::optional<ticket> admit(const boost::asio::ip::address& source);

  std::size_t held() const { return held_; }
  std::size_t held_by(const boost::asio::ip::address& source) const;
  std::size_t total() const { return total_; }
  std::size_t per_source() const { return per_source_; }
  /// Sources with a slot held (the map never keeps a source at zero).
  std::size_t sources() const { return by_source_.size(); }

  /// The source an address counts as: IPv4 (mapped), or the IPv6 /64.
  static source_key key_of(const boost::asio::ip::address& a);

 private:
  void give_back(const source_key& key);

  std::size_t total_;
  std::size_t per_source_;
  std::size_t held_ = 0;
  std::map<source_key, std::size_t> by_source_;
};

} // namespace warren::tunnel
