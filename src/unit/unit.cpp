#include "unit/unit.hpp"

namespace warren::unit {

std::string_view to_string(unit_event::kind k) {
  switch (k) {
  case unit_event::kind::state_changed:
    return "state";
  case unit_event::kind::tunnel_connected:
    return "tunnel connected";
  case unit_event::kind::tunnel_disconnected:
    return "tunnel disconnected";
  case unit_event::kind::reloaded:
    return "reloaded";
  case unit_event::kind::reload_failed:
    return "reload failed";
  case unit_event::kind::error:
    return "error";
  }
  return "?";
}

void unit::set_state(unit_state s) {
  if (status_.state == s)
    return;
  status_.state = s;
  status_.since = std::chrono::system_clock::now();
  if (events_)
    events_(unit_event{unit_event::kind::state_changed, s, {}, status_.since});
}

void unit::record_error(std::string error) {
  status_.last_error = error;
  status_.last_error_at = std::chrono::system_clock::now();
  emit(unit_event::kind::error, std::move(error));
}

void unit::fail(std::string error) {
  record_error(std::move(error));
  set_state(unit_state::failed);
}

void unit::emit(unit_event::kind k, std::string detail) {
  if (events_)
    events_(unit_event{k, status_.state, std::move(detail), std::chrono::system_clock::now()});
}

} // namespace warren::unit
