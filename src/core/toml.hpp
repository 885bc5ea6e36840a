// A reader for the TOML that warren's files use (the daemon's config, the
// server's users file), every key and value carrying its line and column.
//
// Written here rather than taken from toml++ 3.3 (Debian 12), which reaches
// undefined behaviour on malformed input (an assertion in parse_key after
// "[:", an unreachable branch for U+FDFF). This reader is a pure function of
// its input, bounded (size, nesting depth, key and string lengths) and
// fuzzed (tests/fuzz/fuzz_toml.cpp).
//
// Supported (TOML 1.0): comments; bare, quoted and dotted keys; [table] and
// [[array of tables]]; basic strings with every escape (\u and \U must be
// Unicode scalar values), literal strings, both multi-line forms; integers
// (decimal with '_', 0x, 0o, 0b); booleans; arrays (nested, mixed); inline
// tables. Floats and dates/times are refused with a clear error ("not
// supported here"). Duplicate keys and redefined tables are errors, as are
// invalid UTF-8 and control characters. Every error is one sentence,
// "SOURCE:LINE:COLUMN: what is wrong"; columns count characters from 1.
#pragma once

#include "core/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace warren::toml {

struct position {
  int line = 1;
  int column = 1;
};

struct entry;

/// One value. A table keeps its entries in file order.
struct value {
  enum class kind { string, integer, boolean, array, table };
  kind type = kind::string;
  position at; // where the value starts; a table's: its header (or first key)
  std::string text;
  std::int64_t integer = 0;
  bool boolean = false;
  std::vector<value> items;   // array
  std::vector<entry> entries; // table

  // How a table or an array came to be (the redefinition rules need it).
  bool header = false;         // a table named by a [header] ([[...]] elements too)
  bool implicit = false;       // a table created on the way to a header's last key
  bool dotted = false;         // a table created by a dotted key
  bool sealed = false;         // an inline table or an array written as a value
  bool table_array = false;    // an array made by [[...]] headers

  bool is_table() const { return type == kind::table; }
  bool is_array() const { return type == kind::array; }
  bool is_string() const { return type == kind::string; }
  /// The entry under `key` in a table, or null.
  const entry* find(std::string_view key) const;
};

struct entry {
  std::string key;
  position at; // of the key (of the '[' for a table made by a header)
  value v;
};

struct limits {
  std::size_t max_size = 1 << 20;        // the whole text, bytes
  std::size_t max_key = 256;             // one key segment, bytes
  std::size_t max_string = 64 * 1024;    // one string value, bytes
  int max_depth = 32;                    // tables and arrays within each other
};

/// The document's root table, or "SOURCE:LINE:COLUMN: ..." (the first error).
expected<value> parse(std::string_view text, std::string_view source, const limits& bounds = {});

/// "a string", "an integer", ... for error messages.
const char* describe(value::kind k);

/// A key as an error message may show it: printable ASCII kept, other bytes
/// escaped, at most 64 characters.
std::string shown_key(std::string_view key);

/// "SOURCE:LINE:COLUMN: what".
std::string located(std::string_view source, position at, std::string_view what);

} // namespace warren::toml
