#!/usr/bin/env python3
"""Rules the compiler cannot enforce, checked over the source tree.

Each rule names a pattern that once caused a bug, the only file allowed to
use it (the wrapper that makes it safe), and why. A match anywhere else
fails this test with the file, line and reason.

    python3 source_rules.py [ROOT]     (ROOT: the repository, default ../..)
"""

import os
import re
import sys

RULES = [
    {
        # Boost 1.81's any_completion_handler recurses without end on move
        # assignment and on copy from an lvalue (chriskohlhoff/asio#1220):
        # `warren client` overflowed its stack when an async_event waiter in
        # the middle of its list was cancelled (issue 10).
        "pattern": re.compile(r"\bany_completion_handler\s*<|any_completion_handler\.hpp"),
        "allowed": {"src/core/stored_handler.hpp"},
        "why": "use core::stored_handler (src/core/stored_handler.hpp): Boost 1.81's "
               "any_completion_handler overflows the stack on move assignment",
    },
]

DIRS = ("src", "tests", "bench")
EXTENSIONS = (".cpp", ".hpp", ".h", ".cc", ".ipp")


def strip_comments(line):
    return line.split("//", 1)[0]


def check(root):
    problems = []
    for d in DIRS:
        for base, _, files in os.walk(os.path.join(root, d)):
            for name in files:
                if not name.endswith(EXTENSIONS):
                    continue
                path = os.path.join(base, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        code = strip_comments(line)
                        for rule in RULES:
                            if rel not in rule["allowed"] and rule["pattern"].search(code):
                                problems.append("%s:%d: %s\n    %s" % (rel, number, rule["why"], line.strip()))
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print("%d source rule violation(s)" % len(problems))
        return 1
    print("source rules: %d rule(s), no violation" % len(RULES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
