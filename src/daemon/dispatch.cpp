// Dispatch of the control API (dispatch.hpp): the auth-first rule, the
// read-only rule, handler calls and reply assembly.
#include "daemon/dispatch.hpp"

#include "core/text.hpp"

#include <exception>
#include <memory>
#include <vector>

namespace warren::daemon {

using nlohmann::json;

namespace {

rpc_error error(error_code code, std::string message) {
  return rpc_error{code, std::move(message), std::nullopt};
}

// One reply object as text, or -32603 (same id) in its place when it would
// not fit in a frame (a handler's result can be large: units.list of many units).
std::string fit(const json& reply, std::uint32_t max_response) {
  std::string text = dump(reply);
  if (text.size() <= max_response)
    return text;
  json replaced = error_object(nullptr, error(error_code::internal_error, "response of " + std::to_string(text.size()) +
                                                                              " bytes is over the limit of " +
                                                                              std::to_string(max_response)));
  if (const auto id = reply.find("id"); id != reply.end())
    replaced["id"] = *id;
  return dump(replaced);
}

std::string framed(std::string_view text) {
  std::string out;
  append_frame(out, text, 0xFFFFFFFFU);
  return out;
}

// Plans one request on an authenticated connection: a call to make, or the
// reply known already (auth report, unknown method, read-only refusal).
planned_call plan_one(const method_table& table, const connection_state& state, request r) {
  planned_call call;
  call.req = std::move(r);
  const request_id id = call.req.id.value_or(request_id{nullptr});
  const bool answered = !call.req.notification();
  if (call.req.method == k_auth_method) { // already authenticated: report, never re-check or change
    if (answered)
      call.reply = result_object(id, json{{"access", access_name(state.access())}});
    return call;
  }
  const method_info* method = table.find(call.req.method);
  if (method == nullptr) {
    if (answered)
      call.reply = error_object(
          id, error(error_code::method_not_found, "method not found: " + quote_untrusted(call.req.method)));
    return call;
  }
  if (state.read_only() && !method->read_only_ok) {
    if (answered)
      call.reply = error_object(id, error(error_code::read_only, "a read-only caller may not call " + call.req.method));
    return call;
  }
  call.method = method;
  return call;
}

dispatch_outcome refuse(connection_state& state, const request_id& id, const rpc_error& e) {
  state.complete_auth(access_level::none);
  return dispatch_outcome{framed(encode_error(id, e)), true, false};
}

// The first frame of a TCP/TLS connection: a single `auth` request, or the
// connection is closed.
dispatch_outcome first_frame(connection_state& state, std::string_view frame, time_point now,
                             const token_check& check_token, const dispatch_options& options) {
  if (state.auth_expired(now))
    return refuse(state, nullptr, error(error_code::unauthorized, "authentication deadline passed"));
  auto parsed = parse_message(frame, options.limits);
  if (auto* e = std::get_if<rpc_error>(&parsed))
    return refuse(state, nullptr, *e);
  auto& m = std::get<message>(parsed);
  const auto* r = std::get_if<request>(&m.entries.front());
  const rpc_error required =
      error(error_code::unauthorized, "authentication required: the first frame must be an auth request");
  if (m.batch || r == nullptr || r->notification() || r->method != k_auth_method) {
    request_id id = nullptr;
    if (!m.batch && r != nullptr && r->id)
      id = *r->id;
    else if (!m.batch && r == nullptr)
      id = std::get<invalid_request>(m.entries.front()).id;
    return refuse(state, id, required);
  }
  const request_id& id = *r->id;
  const json* token = nullptr;
  if (r->params.is_object()) {
    const auto it = r->params.find("token");
    if (it != r->params.end() && it->is_string() && !it->get_ref<const std::string&>().empty() &&
        it->get_ref<const std::string&>().size() <= k_max_token_length)
      token = &*it;
  }
  if (token == nullptr)
    return refuse(state, id,
                  error(error_code::invalid_params,
                        "auth takes {\"token\": \"...\"} (1 to " + std::to_string(k_max_token_length) + " bytes)"));
  const auth_verdict verdict =
      check_token ? check_token(token->get_ref<const std::string&>()) : auth_verdict::wrong_token;
  switch (verdict) {
  case auth_verdict::admin:
  case auth_verdict::read_only: {
    state.complete_auth(verdict == auth_verdict::admin ? access_level::admin : access_level::read_only);
    return dispatch_outcome{framed(encode_result(id, json{{"access", access_name(state.access())}})), false, false};
  }
  case auth_verdict::rate_limited:
    return refuse(state, id,
                  error(error_code::rate_limited, "too many failed attempts from this address; try again later"));
  case auth_verdict::wrong_token:
    break;
  }
  auto out = refuse(state, id, error(error_code::unauthorized, "wrong token"));
  out.auth_failed = true;
  return out;
}

} // namespace

std::string_view access_name(access_level a) noexcept {
  switch (a) {
  case access_level::none:
    return "none";
  case access_level::read_only:
    return "read-only";
  case access_level::admin:
    return "admin";
  }
  return "none";
}

connection_state connection_state::unix_peer(access_level granted) noexcept {
  connection_state s;
  s.transport_ = transport_kind::unix_socket;
  s.access_ = granted;
  return s;
}

connection_state connection_state::network(transport_kind kind, time_point accepted, duration auth_timeout) noexcept {
  connection_state s;
  s.transport_ = kind;
  s.awaiting_auth_ = true;
  s.deadline_ = accepted + auth_timeout;
  return s;
}

std::optional<time_point> connection_state::auth_deadline() const noexcept {
  if (!awaiting_auth_)
    return std::nullopt;
  return deadline_;
}

void connection_state::complete_auth(access_level granted) noexcept {
  awaiting_auth_ = false;
  access_ = granted;
}

method_result method_result::invalid_params(std::string message) {
  return method_result(rpc_error{error_code::invalid_params, std::move(message), std::nullopt});
}

bool method_table::add(std::string name, method_handler handler, bool read_only_ok) {
  if (name.empty() || name == k_auth_method || !handler)
    return false;
  return methods_.emplace(std::move(name), method_info{std::move(handler), nullptr, read_only_ok}).second;
}

bool method_table::add_async(std::string name, async_method_handler handler, bool read_only_ok) {
  if (name.empty() || name == k_auth_method || !handler)
    return false;
  return methods_.emplace(std::move(name), method_info{nullptr, std::move(handler), read_only_ok}).second;
}

const method_info* method_table::find(std::string_view name) const {
  const auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

dispatch_plan plan_dispatch(const method_table& table, connection_state& state, std::string_view frame, time_point now,
                            const token_check& check_token, const dispatch_options& options) {
  dispatch_plan plan;
  if (state.awaiting_auth()) {
    plan.outcome = first_frame(state, frame, now, check_token, options);
    return plan;
  }
  if (!state.authenticated()) {
    plan.outcome = dispatch_outcome{framed(encode_error(nullptr, error(error_code::unauthorized, "not authenticated"))),
                                    true, false};
    return plan;
  }
  auto parsed = parse_message(frame, options.limits);
  if (const auto* e = std::get_if<rpc_error>(&parsed)) { // the framing is intact: the connection goes on
    plan.outcome = dispatch_outcome{framed(encode_error(nullptr, *e)), false, false};
    return plan;
  }
  auto& m = std::get<message>(parsed);
  plan.batch = m.batch;
  plan.calls.reserve(m.entries.size());
  for (auto& entry : m.entries) {
    if (auto* bad = std::get_if<invalid_request>(&entry)) {
      planned_call call;
      call.reply = error_object(bad->id, bad->error);
      plan.calls.push_back(std::move(call));
    } else {
      plan.calls.push_back(plan_one(table, state, std::move(std::get<request>(entry))));
    }
  }
  return plan;
}

void complete_call(planned_call& call, const method_result& result) {
  if (call.req.notification())
    return;
  const request_id id = call.req.id.value_or(request_id{nullptr});
  call.reply = result.ok() ? result_object(id, result.value()) : error_object(id, result.error());
}

void run_call(planned_call& call, const connection_state& caller) {
  if (call.method == nullptr)
    return;
  try {
    if (call.method->handler) {
      complete_call(call, call.method->handler(call.req.params, caller));
      return;
    }
    auto answer = std::make_shared<std::optional<method_result>>();
    call.method->async_handler(call.req.params, caller, [answer](method_result r) { *answer = std::move(r); });
    if (!*answer) // answered later, or never: this synchronous path cannot wait
      answer->emplace(error(error_code::internal_error, call.req.method + " needs the asynchronous dispatcher"));
    complete_call(call, **answer);
  } catch (const std::exception&) {
    complete_call(call, rpc_error{error_code::internal_error, "internal error in " + call.req.method, std::nullopt});
  }
}

dispatch_outcome assemble(const dispatch_plan& plan, const dispatch_options& options) {
  if (plan.outcome)
    return *plan.outcome;
  std::vector<std::string> replies;
  for (const auto& call : plan.calls) {
    if (call.reply)
      replies.push_back(fit(*call.reply, options.max_response));
  }
  dispatch_outcome out;
  if (replies.empty())
    return out; // notifications only
  if (!plan.batch) {
    out.reply = framed(replies.front());
    return out;
  }
  std::string batch = "[";
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (i > 0)
      batch += ',';
    batch += replies[i];
  }
  batch += ']';
  if (batch.size() > options.max_response)
    batch = encode_error(nullptr, error(error_code::internal_error,
                                        "batch response of " + std::to_string(batch.size()) +
                                            " bytes is over the limit of " + std::to_string(options.max_response)));
  out.reply = framed(batch);
  return out;
}

dispatch_outcome dispatch(const method_table& table, connection_state& state, std::string_view frame, time_point now,
                          const token_check& check_token, const dispatch_options& options) {
  auto plan = plan_dispatch(table, state, frame, now, check_token, options);
  for (auto& call : plan.calls)
    run_call(call, state);
  return assemble(plan, options);
}

std::string frame_error_reply(frame_status status, std::uint32_t announced, std::uint32_t limit) {
  rpc_error e;
  if (status == frame_status::too_large) {
    e = error(error_code::frame_too_large, "frame of " + std::to_string(announced) + " bytes is over the limit of " +
                                               std::to_string(limit) + " bytes");
    e.data = json{{"limit", limit}};
  } else {
    e = error(error_code::invalid_request, std::string(frame_status_name(status)));
  }
  return framed(encode_error(nullptr, e));
}

} // namespace warren::daemon
