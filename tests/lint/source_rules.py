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
        # Any mention in code, not only `any_completion_handler<`: a line
        # break or a comment between the name and `<`, an alias, or a macro
        # hid the use from a pattern that wanted both on one line.
        "pattern": re.compile(r"\bany_completion_handler\b"),
        "allowed": {"src/core/stored_handler.hpp"},
        "why": "use core::stored_handler (src/core/stored_handler.hpp): Boost 1.81's "
               "any_completion_handler overflows the stack on move assignment",
    },
]

DIRS = ("src", "tests", "bench")
EXTENSIONS = (".cpp", ".hpp", ".h", ".cc", ".ipp", ".inl", ".tpp", ".cxx", ".hxx")

# Code the rules must catch (checked at every run, so that a rule that is
# loosened, or comment stripping that eats code, fails here first): each
# sample is one violation of the first rule.
SAMPLES = (
    'const char* u = "ws://x"; boost::asio::any_completion_handler<void()> h;\n',
    "boost::asio::any_completion_handler\n    <void()> h;\n",
    "boost::asio::any_completion_handler /* c */ <void()> h;\n",
    "#define H boost::asio::any_completion_handler\n",
    "#include <boost/asio/any_completion_handler.hpp>\n",
)


def code_only(text):
    """`text` with comments blanked and string and character literals
    emptied, line breaks kept (so line numbers stay right). A `//` inside a
    string ("ws://...") is not a comment."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j) or " ")
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                out.append(c)  # a digit separator (1'000) or a suffix, not a literal
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def violations(rel, text):
    problems = []
    for number, code in enumerate(code_only(text).split("\n"), 1):
        for rule in RULES:
            if rel not in rule["allowed"] and rule["pattern"].search(code):
                problems.append((number, rule))
    return problems


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
                    text = f.read()
                lines = text.split("\n")
                for number, rule in violations(rel, text):
                    problems.append("%s:%d: %s\n    %s" % (rel, number, rule["why"], lines[number - 1].strip()))
    return problems


def self_test():
    missed = [sample for sample in SAMPLES if len(violations("src/sample.cpp", sample)) != 1]
    for sample in missed:
        print("source_rules.py itself: the rules miss (or count twice) %r" % sample)
    return missed


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    if self_test():
        return 1
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
