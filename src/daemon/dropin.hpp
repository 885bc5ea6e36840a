// Drop-ins: units added through the control API (units.add), each kept as
// one TOML file <state dir>/units.d/NAME.toml (0600, written atomically:
// temporary file + rename), so that a reload or a daemon restart keeps it;
// units.remove deletes it. And the rule for the files such a unit may
// name: only under the config and state directories.
#pragma once

#include "core/expected.hpp"

#include <string>
#include <vector>

namespace warren::daemon {

/// <state_dir>/units.d
std::string dropin_dir(const std::string& state_dir);

/// Writes `text` as DIR/NAME.toml (DIR made 0700 when missing): a temporary
/// file (O_EXCL, O_NOFOLLOW, 0600), fsync, rename. `name` is a unit name
/// (letters, digits, '.', '_', '-'; checked by the config check).
expected<bool> write_dropin(const std::string& dir, const std::string& name, const std::string& text);

/// Removes DIR/NAME.toml; a missing file is no error.
expected<bool> remove_dropin(const std::string& dir, const std::string& name);

struct dropin_file {
  std::string path; // DIR/NAME.toml
  std::string name; // NAME (the file name without .toml)
  std::string text;
};

/// Every DIR/*.toml in name order (a missing DIR: none). A file that cannot
/// be read (not a regular file, over 1 MiB) goes to `errors` as one line
/// naming it, never its contents.
std::vector<dropin_file> read_dropins(const std::string& dir, std::vector<std::string>& errors);

/// Whether `path` may be named by a unit added through the API: absolute,
/// no ".." component, and, with every symlink of its existing part
/// resolved, inside one of `dirs` (each resolved the same way). The error
/// names the path and the directories, nothing read from a file.
expected<bool> path_allowed(const std::string& path, const std::vector<std::string>& dirs);

} // namespace warren::daemon
