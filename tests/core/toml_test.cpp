// The TOML reader (core/toml.*): values with their positions, the
// redefinition rules, escapes, limits, and one error sentence with
// "SOURCE:LINE:COLUMN" for each kind of malformed input (among them what
// made toml++ 3.3 reach undefined behaviour).
#include "core/toml.hpp"

#include <gtest/gtest.h>

namespace warren::toml {
namespace {

value parsed(std::string_view text) {
  auto r = parse(text, "t.toml");
  EXPECT_TRUE(r) << r.error();
  return r ? std::move(r).value() : value{};
}

std::string error_of(std::string_view text, const limits& bounds = {}) {
  auto r = parse(text, "t.toml", bounds);
  EXPECT_FALSE(r) << text;
  return r ? std::string() : r.error();
}

TEST(TomlTest, ValuesAndPositions) {
  const auto doc = parsed("# top\n"
                          "title = \"x\" # trailing\n"
                          "n = -1_000\n"
                          "hex = 0xff\n"
                          "oct = 0o17\n"
                          "bin = 0b101\n"
                          "yes = true\n"
                          "list = [ 1, \"two\", [3], ]\n"
                          "\"quoted key\" = 'C:\\path'\n"
                          "a.b.c = 1\n"
                          "a.b.d = 2\n"
                          "inline = { x = 1, y.z = \"w\" }\n"
                          "\n"
                          "[[unit]]\n"
                          "name = \"one\"\n"
                          "[[unit]]\n"
                          "  name = \"two\"\n");
  ASSERT_TRUE(doc.is_table());
  const auto* title = doc.find("title");
  ASSERT_TRUE(title);
  EXPECT_EQ(title->v.text, "x");
  EXPECT_EQ(title->at.line, 2);
  EXPECT_EQ(title->at.column, 1);
  EXPECT_EQ(title->v.at.column, 9);
  EXPECT_EQ(doc.find("n")->v.integer, -1000);
  EXPECT_EQ(doc.find("hex")->v.integer, 255);
  EXPECT_EQ(doc.find("oct")->v.integer, 15);
  EXPECT_EQ(doc.find("bin")->v.integer, 5);
  EXPECT_TRUE(doc.find("yes")->v.boolean);
  const auto& list = doc.find("list")->v;
  ASSERT_EQ(list.items.size(), 3u);
  EXPECT_EQ(list.items[1].text, "two");
  EXPECT_EQ(list.items[1].at.column, 13);
  EXPECT_EQ(list.items[2].items[0].integer, 3);
  EXPECT_EQ(doc.find("quoted key")->v.text, "C:\\path");
  const auto* a = doc.find("a");
  ASSERT_TRUE(a && a->v.is_table());
  EXPECT_EQ(a->v.find("b")->v.entries.size(), 2u);
  EXPECT_EQ(a->v.find("b")->v.find("d")->at.line, 11);
  EXPECT_EQ(a->v.find("b")->v.find("d")->at.column, 5);
  EXPECT_EQ(doc.find("inline")->v.find("y")->v.find("z")->v.text, "w");
  const auto& units = doc.find("unit")->v;
  ASSERT_EQ(units.items.size(), 2u);
  EXPECT_EQ(units.items[1].find("name")->v.text, "two");
  EXPECT_EQ(units.items[1].find("name")->at.line, 17);
  EXPECT_EQ(units.items[1].find("name")->at.column, 3);
  EXPECT_EQ(units.items[1].at.line, 16);
}

TEST(TomlTest, Strings) {
  const auto doc = parsed("e = \"\\b\\t\\n\\f\\r\\\"\\\\\\u00e9\\U0001F600\"\n"
                          "m = \"\"\"\nline1\\\n    line2\n\"\"\"\n"
                          "q = \"\"\"\"quoted\"\"\"\"\n"
                          "l = '''\nraw \\n ''\n'''\n"
                          "u = \"é ✓\"\n");
  EXPECT_EQ(doc.find("e")->v.text, "\b\t\n\f\r\"\\\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(doc.find("m")->v.text, "line1line2\n");
  EXPECT_EQ(doc.find("q")->v.text, "\"quoted\"");
  EXPECT_EQ(doc.find("l")->v.text, "raw \\n ''\n");
  EXPECT_EQ(doc.find("u")->v.text, "é ✓");
  // Columns count characters, not bytes.
  const auto d2 = parsed("k = \"éé\"\nx = [\"é\", 1]\n");
  EXPECT_EQ(d2.find("x")->v.items[1].at.column, 11);
}

TEST(TomlTest, TablesAndRedefinition) {
  const auto doc = parsed("[a.b]\nx = 1\n[a]\ny = 2\n[a.c]\n");
  EXPECT_EQ(doc.find("a")->v.find("b")->v.find("x")->v.integer, 1);
  EXPECT_EQ(doc.find("a")->v.find("y")->v.integer, 2);
  EXPECT_EQ(error_of("[a]\n[a]\n"), "t.toml:2:1: table [a] is defined twice (also on line 1)");
  EXPECT_EQ(error_of("x = 1\nx = 2\n"), "t.toml:2:1: x given twice (also on line 1)");
  EXPECT_EQ(error_of("a.b = 1\na.b.c = 2\n"), "t.toml:2:3: a.b is already defined (line 1); a dotted key cannot add to it");
  EXPECT_EQ(error_of("[a]\nb = 1\n[a.b]\n"), "t.toml:3:4: a.b is already an integer (line 2), not a table");
  EXPECT_NE(error_of("a = [1]\n[[a]]\n").find("t.toml:2:1: [[a]]: a is already an array"), std::string::npos);
  EXPECT_EQ(error_of("[x]\ny.z = 1\n[x.y]\n"), "t.toml:3:1: table [x.y] is defined twice (also on line 2)");
  EXPECT_NE(error_of("a = {b = 1}\n[a.c]\n").find("inline table"), std::string::npos);
  EXPECT_EQ(error_of("a = {b = 1}\na.c = 2\n"), "t.toml:2:1: a is already defined (line 1); a dotted key cannot add to it");
  EXPECT_EQ(error_of("a = {b = 1,\n c = 2}\n"), "t.toml:1:5: an inline table { ... } must end on its line");
  EXPECT_EQ(error_of("a = {b = 1, b = 2}\n"), "t.toml:1:13: b given twice (also on line 1)");
}

TEST(TomlTest, Errors) {
  EXPECT_EQ(error_of("x = \"a\" y\n"), "t.toml:1:9: expected the end of the line, found 'y'");
  EXPECT_EQ(error_of("x = \"a\\q\"\n"),
            "t.toml:1:7: unsupported escape in a string (use 'single quotes' for text with backslashes)");
  EXPECT_EQ(error_of("x = \"\\uD800\"\n"), "t.toml:1:6: \\u escape that is not a Unicode scalar value");
  EXPECT_EQ(error_of("x = \"\\U00110000\"\n"), "t.toml:1:6: \\U escape that is not a Unicode scalar value");
  EXPECT_EQ(error_of("x = \"\\u12\"\n"), "t.toml:1:6: \\u needs 4 hex digits");
  EXPECT_EQ(error_of("x = \"abc\ny = 1\n"), "t.toml:1:5: a string that does not end on its line");
  EXPECT_EQ(error_of("x = [1,\n"), "t.toml:1:5: a list without its closing ']'");
  EXPECT_EQ(error_of("x = [1 2]\n"), "t.toml:1:8: expected ',' or ']' in the list, found '2'");
  EXPECT_EQ(error_of("x = 1.5\n"), "t.toml:1:5: a floating-point number: not supported here (write an integer)");
  EXPECT_EQ(error_of("x = inf\n"), "t.toml:1:5: a floating-point number: not supported here (write an integer)");
  EXPECT_EQ(error_of("x = 1979-05-27\n"), "t.toml:1:5: a date or time: not supported here (write it as a \"string\")");
  EXPECT_EQ(error_of("x = 0123\n"), "t.toml:1:5: an integer with a leading zero");
  EXPECT_EQ(error_of("x = 1__0\n"), "t.toml:1:5: '_' in an integer must stand between digits");
  EXPECT_EQ(error_of("x = 9223372036854775808\n"), "t.toml:1:5: an integer out of range (a signed 64-bit integer)");
  EXPECT_EQ(parsed("x = -9223372036854775808\n").find("x")->v.integer, INT64_MIN);
  EXPECT_EQ(error_of("x = -0x10\n"), "t.toml:1:5: a hexadecimal, octal or binary integer cannot have a sign");
  EXPECT_EQ(error_of("x = yes\n"),
            "t.toml:1:5: expected a value (a \"string\", an integer, true, false, [an array] or {a table}), found 'y'");
  EXPECT_EQ(error_of("x\n"), "t.toml:1:2: expected '=' after the key, found the end of the line");
  EXPECT_EQ(error_of("= 1\n"), "t.toml:1:1: expected a key, found '='");
  EXPECT_EQ(error_of("[a\n"), "t.toml:1:3: expected ']' to close the table header, found the end of the line");
  EXPECT_EQ(error_of("[[a]\n"), "t.toml:1:4: expected ']]' to close the table header, found ']'");
  EXPECT_EQ(error_of("x = 1 # \x01\n"), "t.toml:1:9: a control character in a comment");
  EXPECT_EQ(error_of("x = 1\r\ny = 2\rz = 3\n"), "t.toml:2:6: expected the end of the line, found U+000D");
  // What toml++ 3.3 turned into an assertion and an unreachable branch.
  EXPECT_EQ(error_of("# c\n[::1]:\n"), "t.toml:2:2: expected a key, found ':'");
  EXPECT_EQ(error_of("\xEF\xB7\xBF"), "t.toml:1:1: expected a key, found U+FDFF");
  EXPECT_EQ(error_of("[[[user]]]\n"), "t.toml:1:3: expected a key, found '['");
}

TEST(TomlTest, Utf8) {
  EXPECT_EQ(error_of("x = \"ok\"\ny = \"\xC3\x28\"\n"), "t.toml:2:6: invalid UTF-8 (the file must be UTF-8 text)");
  EXPECT_EQ(error_of("x = \"\xED\xA0\x80\"\n"), "t.toml:1:6: invalid UTF-8 (the file must be UTF-8 text)")
      << "an encoded surrogate";
  EXPECT_EQ(error_of("x = \"\xF4\x90\x80\x80\"\n"), "t.toml:1:6: invalid UTF-8 (the file must be UTF-8 text)");
  EXPECT_EQ(error_of("x = \"\xC0\xAF\"\n"), "t.toml:1:6: invalid UTF-8 (the file must be UTF-8 text)")
      << "an overlong form";
  EXPECT_EQ(parsed("\xEF\xBB\xBFx = 1\n").find("x")->at.column, 1) << "a byte order mark is skipped";
}

TEST(TomlTest, Limits) {
  limits small;
  small.max_size = 16;
  EXPECT_EQ(error_of(std::string(17, '#'), small), "t.toml: larger than 16 bytes");
  small = {};
  small.max_string = 4;
  EXPECT_EQ(error_of("x = \"12345\"\n", small), "t.toml:1:5: a string longer than 4 bytes");
  small.max_key = 3;
  EXPECT_EQ(error_of("abcd = 1\n", small), "t.toml:1:1: a key longer than 3 bytes");
  small = {};
  small.max_depth = 4;
  EXPECT_EQ(error_of("x = [[[[[1]]]]]\n", small), "t.toml:1:9: values nested more than 4 deep");
  EXPECT_EQ(error_of("a.b.c.d.e = 1\n", small), "t.toml:1:9: tables nested more than 4 deep");
  EXPECT_EQ(error_of("[a.b.c]\nd.e = 1\n", small), "t.toml:2:3: tables nested more than 4 deep");
  // The default depth bound holds against a deep input (no stack exhaustion).
  EXPECT_EQ(error_of(std::string(100000, '[')), "t.toml:1:3: expected a key, found '['");
  EXPECT_NE(error_of("x = " + std::string(100000, '[')).find("nested more than 32 deep"), std::string::npos);
  EXPECT_NE(error_of("x = " + std::string(100000, '{')).find("t.toml:1:"), std::string::npos);
}

} // namespace
} // namespace warren::toml
