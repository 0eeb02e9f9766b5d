//! Top-level JSON object editing that keeps every untouched value byte-for-byte.
//!
//! A pass-through upstream must receive the client's body as sent, apart from the fields the
//! relay rewrites: a typed round-trip would drop unknown fields and reorder keys. The object is
//! split into `(key, raw value)` pairs borrowed from the input and written back with edits.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The members of a JSON object, in order, borrowing their values' JSON text from the input.
#[derive(Debug)]
pub struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
}

/// Where each top-level member sits in a body: computed by the one parse the router does, so a
/// pass-through rewrite does not parse the body again. Keys are spans of the body too, so
/// locating the members allocates nothing per member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    members: Vec<(Key, Range<usize>)>,
}

/// A member's key: where it sits in the body, or its unescaped text when the body escapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Span(Range<usize>),
    Unescaped(Box<str>),
}

impl Layout {
    /// Splits a JSON object body into its members. Anything but an object is an error.
    pub fn of(body: &[u8]) -> Result<Self, serde_json::Error> {
        match strict::members(body) {
            Some(members) => Ok(Layout { members }),
            // What the strict pass leaves (escaped top-level keys, deep nesting), and every
            // error, whose message then comes from serde_json.
            None => Layout::parsed(body),
        }
    }

    /// [`Layout::of`] by serde_json alone.
    fn parsed(body: &[u8]) -> Result<Self, serde_json::Error> {
        let object = RawObject::parse(body)?;
        let start = body.as_ptr() as usize;
        let span = |text: &[u8]| {
            let offset = text.as_ptr() as usize - start;
            offset..offset + text.len()
        };
        let members = object
            .members
            .into_iter()
            .map(|(key, value)| {
                let key = match key {
                    Cow::Borrowed(text) => Key::Span(span(text.as_bytes())),
                    Cow::Owned(text) => Key::Unescaped(text.into_boxed_str()),
                };
                (key, span(&value))
            })
            .collect();
        Ok(Layout { members })
    }

    /// The JSON text of a member's value in `body` (the body this layout was computed from).
    pub fn value<'b>(&self, body: &'b [u8], key: &str) -> Option<&'b [u8]> {
        self.span(body, key).and_then(|range| body.get(range))
    }

    /// Where a member's value sits in `body`.
    pub fn span(&self, body: &[u8], key: &str) -> Option<Range<usize>> {
        self.members.iter().find(|(k, _)| key_bytes(k, body) == key.as_bytes()).map(|(_, range)| range.clone())
    }
}

/// A key as bytes, for lookups: comparing bytes needs no UTF-8 check of every key passed over.
fn key_bytes<'b>(key: &'b Key, body: &'b [u8]) -> &'b [u8] {
    match key {
        Key::Span(range) => body.get(range.clone()).unwrap_or_default(),
        Key::Unescaped(text) => text.as_bytes(),
    }
}

fn key_text<'b>(key: &'b Key, body: &'b [u8]) -> &'b str {
    match key {
        // The span was borrowed from this body as a `&str` by the parse, so it is UTF-8.
        Key::Span(range) => body.get(range.clone()).and_then(|text| std::str::from_utf8(text).ok()).unwrap_or(""),
        Key::Unescaped(text) => text,
    }
}

/// The JSON text of a top-level member's value, found by a scan that tracks only nesting and
/// strings: no values are parsed or validated. For bodies the relay forwards unchanged anyway
/// (a response's `usage`), where a full parse would cost more than the rest of the relay's work.
/// Malformed input yields `None` or a slice that then fails to parse, never a panic.
pub fn top_level_member<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    top_level_members(body).find(|(k, _)| *k == key.as_bytes()).map(|(_, value)| value)
}

/// Like [`top_level_member`], for a member that usually comes last (a response's `usage`): looked
/// for from the end first, so that only that member is scanned rather than the whole body.
pub fn trailing_member<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    last_member(body, key).or_else(|| top_level_member(body, key))
}

/// `key`'s value if it is the last member of the object `body` and is `null` or an object.
///
/// In valid JSON a quoted `key` preceded by `{` or `,` and followed by `:`, a value and the
/// object's closing brace is a top-level key: a quote inside a string is escaped, and a deeper
/// member would need more than one closing brace after it. Anything else (including malformed
/// bodies) is left to the forward scan.
fn last_member<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let body = body.trim_ascii_end();
    let close = body.len().checked_sub(1).filter(|&i| body[i] == b'}')?;
    // The last quote that opens `"key"`: the member sits near the end, so walking back over
    // quotes is shorter than building a substring searcher for one lookup.
    let quote = memchr::memrchr_iter(b'"', &body[..close])
        .find(|&q| body[q + 1..].starts_with(key.as_bytes()) && body.get(q + 1 + key.len()) == Some(&b'"'))?;
    let (at, key_end) = (quote + 1, quote + 1 + key.len());
    if !matches!(body[..at - 1].trim_ascii_end().last(), Some(b'{' | b',')) {
        return None;
    }
    let value = body[key_end + 1..close].trim_ascii().strip_prefix(b":")?.trim_ascii();
    let whole_object = || value.first() == Some(&b'{') && object_end(value) == Some(value.len() - 1);
    (value == b"null" || whole_object()).then_some(value)
}

/// The index of the brace closing the object that `body` starts with.
fn object_end(body: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => i = string_end(body, i + 1)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The top-level `(key, value)` pairs of a JSON object, by the same scan as
/// [`top_level_member`]: keys as written between their quotes (escapes left in), values trimmed.
/// Stops at the first malformation it notices.
pub fn top_level_members(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut depth = 0usize;
    let mut i = 0;
    let mut pending: Option<(&[u8], usize)> = None;
    std::iter::from_fn(move || {
        while i < body.len() {
            match body[i] {
                b'"' => {
                    let end = string_end(body, i + 1)?;
                    if depth == 1 && pending.is_none() {
                        let colon = end + 1 + body[end + 1..].iter().position(|b| !b.is_ascii_whitespace())?;
                        if body[colon] == b':' {
                            pending = Some((&body[i + 1..end], colon + 1));
                        }
                    }
                    i = end;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' | b',' if depth == 1 && pending.is_some() => {
                    let (key, start) = pending.take()?;
                    if body[i] != b',' {
                        depth -= 1;
                    }
                    let value = body[start..i].trim_ascii();
                    i += 1;
                    return Some((key, value));
                }
                b'}' | b']' => depth = depth.checked_sub(1)?,
                _ => {}
            }
            i += 1;
        }
        None
    })
}

/// For each object in the JSON array that `array` starts with, the values of its members named
/// `keys` (`None` for those it lacks), by the same scan as [`top_level_members`]. A value runs
/// from its first byte to the end of `array`: enough to read a number or tell a string from
/// `null` without finding where the value ends. Stops at the first malformation it notices.
pub fn element_members<'a, const N: usize>(
    array: &'a [u8],
    keys: [&'a str; N],
) -> impl Iterator<Item = [Option<&'a [u8]>; N]> + 'a {
    let mut i = if array.first() == Some(&b'[') { 1 } else { array.len() };
    std::iter::from_fn(move || {
        let mut values = [None; N];
        let mut depth = 0usize;
        while i < array.len() {
            match array[i] {
                b'"' => {
                    let end = string_end(array, i + 1)?;
                    if depth == 1 {
                        let name = &array[i + 1..end];
                        if let Some(slot) = keys.iter().position(|key| key.as_bytes() == name) {
                            // A string value equal to a key's name is not followed by a colon.
                            if let Some(value) = array[end + 1..].trim_ascii_start().strip_prefix(b":") {
                                values[slot] = Some(value.trim_ascii_start());
                            }
                        }
                    }
                    i = end;
                }
                b'{' | b'[' => depth += 1,
                // The array's own closing bracket.
                b'}' | b']' if depth == 0 => return None,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        return Some(values);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    })
}

/// The strict pass behind [`Layout::of`]: one walk over the body that validates it as serde_json
/// does and notes where each top-level member lies. A request body is parsed on every request,
/// and serde_json's way to the same spans (a `RawValue` per member) cost more than the relay's
/// header handling: it checks each value's UTF-8 twice and goes through a visitor per member.
///
/// It accepts only what serde_json accepts, with the same spans (the tests compare the two on
/// arbitrary input), and gives up (`None`) on anything it does not take on itself: invalid JSON,
/// a top-level key with an escape (serde_json unescapes it), nesting deeper than [`MAX_DEPTH`].
mod strict {
    use std::ops::Range;

    use super::Key;

    /// Deeper than this is left to serde_json, whose own limit is 128.
    pub(super) const MAX_DEPTH: usize = 64;

    pub(super) fn members(body: &[u8]) -> Option<Vec<(Key, Range<usize>)>> {
        // Strings are the only place bytes above ASCII may be, so this is serde_json's UTF-8
        // check of each string, done once.
        std::str::from_utf8(body).ok()?;
        let mut scan = Scan { body, at: 0 };
        scan.whitespace();
        scan.eat(b'{')?;
        let mut members = Vec::with_capacity(8);
        scan.whitespace();
        if !scan.eat_if(b'}') {
            loop {
                scan.eat(b'"')?;
                let key = scan.at..scan.string_end(false)?;
                scan.at = key.end + 1;
                scan.whitespace();
                scan.eat(b':')?;
                scan.whitespace();
                let start = scan.at;
                scan.value(1)?;
                members.push((Key::Span(key), start..scan.at));
                scan.whitespace();
                if scan.eat_if(b'}') {
                    break;
                }
                scan.eat(b',')?;
                scan.whitespace();
            }
        }
        scan.whitespace();
        (scan.at == body.len()).then_some(members)
    }

    struct Scan<'a> {
        body: &'a [u8],
        at: usize,
    }

    impl Scan<'_> {
        fn peek(&self) -> Option<u8> {
            self.body.get(self.at).copied()
        }

        fn eat_if(&mut self, byte: u8) -> bool {
            let next = self.peek() == Some(byte);
            self.at += usize::from(next);
            next
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            self.eat_if(byte).then_some(())
        }

        /// JSON's four whitespace bytes.
        fn whitespace(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
                self.at += 1;
            }
        }

        /// Past one value that starts here, `depth` containers deep.
        fn value(&mut self, depth: usize) -> Option<()> {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    self.at = self.string_end(true)? + 1;
                    Some(())
                }
                b'{' => self.container(depth, b'}'),
                b'[' => self.container(depth, b']'),
                b't' => self.word(b"true"),
                b'f' => self.word(b"false"),
                b'n' => self.word(b"null"),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        /// An object or array, its opening byte here: members or elements separated by commas.
        fn container(&mut self, depth: usize, close: u8) -> Option<()> {
            if depth >= MAX_DEPTH {
                return None;
            }
            self.at += 1;
            self.whitespace();
            if self.eat_if(close) {
                return Some(());
            }
            loop {
                if close == b'}' {
                    self.eat(b'"')?;
                    self.at = self.string_end(true)? + 1;
                    self.whitespace();
                    self.eat(b':')?;
                    self.whitespace();
                }
                self.value(depth + 1)?;
                self.whitespace();
                if self.eat_if(close) {
                    return Some(());
                }
                self.eat(b',')?;
                self.whitespace();
            }
        }

        fn word(&mut self, word: &[u8]) -> Option<()> {
            self.body[self.at..].starts_with(word).then(|| self.at += word.len())
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        fn number(&mut self) -> Option<()> {
            self.eat_if(b'-');
            match self.peek()? {
                b'0' => self.at += 1,
                b'1'..=b'9' => self.digits(),
                _ => return None,
            }
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return None;
            }
            if self.eat_if(b'.') {
                self.some_digits()?;
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.at += 1;
                if !self.eat_if(b'+') {
                    self.eat_if(b'-');
                }
                self.some_digits()?;
            }
            Some(())
        }

        fn digits(&mut self) {
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
        }

        fn some_digits(&mut self) -> Option<()> {
            let start = self.at;
            self.digits();
            (self.at > start).then_some(())
        }

        /// The index of the quote closing the string whose text starts here: no control bytes,
        /// and escapes as serde_json takes them when it skips a value (`\u` and four hex digits,
        /// whatever code point they make). With `escapes` false, any escape gives up.
        fn string_end(&self, escapes: bool) -> Option<usize> {
            let mut from = self.at;
            loop {
                let at = self.next_special(from)?;
                match self.body[at] {
                    b'"' => return Some(at),
                    b'\\' if escapes => {}
                    _ => return None,
                }
                from = at + 2;
                match self.body.get(at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.body.get(from..from + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        from += 4;
                    }
                    _ => return None,
                }
            }
        }

        /// The first quote, backslash or control byte from `from` on, if any.
        fn next_special(&self, from: usize) -> Option<usize> {
            const SHORT: usize = 16;
            let special = |b: &u8| matches!(b, b'"' | b'\\' | 0..=0x1f);
            let rest = self.body.get(from..)?;
            // Keys, roles and model names end within a few bytes, sooner than memchr is set up.
            let short = &rest[..rest.len().min(SHORT)];
            if let Some(at) = short.iter().position(special) {
                return Some(from + at);
            }
            let long = &rest[short.len()..];
            let end = memchr::memchr2(b'"', b'\\', long)?;
            let at = long[..end].iter().position(|&b| b < 0x20).unwrap_or(end);
            Some(from + short.len() + at)
        }
    }
}

/// The index of the quote closing the string whose text starts at `from`.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
    }
}

impl<'a> RawObject<'a> {
    /// Splits a JSON object. Anything else is an error.
    pub fn parse(input: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(input)
    }

    /// The members of `body` as located by `layout`, without parsing again.
    pub fn from_layout(body: &'a [u8], layout: &'a Layout) -> Self {
        let members = layout
            .members
            .iter()
            .map(|(key, range)| (Cow::Borrowed(key_text(key, body)), Cow::Borrowed(&body[range.clone()])))
            .collect();
        RawObject { members }
    }

    /// The JSON text of a member's value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }

    /// Replaces (or appends) a member's value, given as JSON text.
    fn set(&mut self, key: &str, value: Vec<u8>) {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = Cow::Owned(value),
            None => self.members.push((Cow::Owned(key.to_owned()), Cow::Owned(value))),
        }
    }

    /// Sets a member to a serialisable value.
    pub fn set_value<T: serde::Serialize>(&mut self, key: &str, value: &T) {
        if let Ok(json) = serde_json::to_vec(value) {
            self.set(key, json);
        }
    }

    /// Removes a member; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|(k, _)| k != key);
        before != self.members.len()
    }

    /// Renames a member in place, keeping its position and value.
    pub fn rename(&mut self, from: &str, to: &str) {
        if self.get(to).is_some() {
            self.remove(from);
            return;
        }
        if let Some((key, _)) = self.members.iter_mut().find(|(k, _)| k == from) {
            *key = Cow::Owned(to.to_owned());
        }
    }

    /// Writes the object back; untouched values are copied as they were.
    pub fn to_bytes(&self) -> Bytes {
        let size: usize = self.members.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Keys are re-escaped; serialising a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, key.as_ref());
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// A JSON string borrowed from the input unless it has escapes: serde's own `Cow<str>` always
/// copies, which was an allocation per member key (and per `model`) of every request body.
#[derive(serde::Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Text(key), value)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    members.push((key, Cow::Borrowed(value.get().as_bytes())));
                }
                Ok(RawObject { members })
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_top_level_member_is_found_past_nested_and_quoted_look_alikes() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\": {1}","usage":{"n":9}}}],
            "meta":{"usage":{"n":8}}, "usage" : {"prompt_tokens":5,"completion_tokens":1} }"#;
        assert_eq!(top_level_member(body, "usage"), Some(&br#"{"prompt_tokens":5,"completion_tokens":1}"#[..]));
        assert_eq!(top_level_member(body, "id"), Some(&br#""x""#[..]));
        assert_eq!(top_level_member(br#"{"a":1,"usage":null}"#, "usage"), Some(&b"null"[..]));
        assert_eq!(top_level_member(br#"{"a":{"usage":1}}"#, "usage"), None);
        assert_eq!(top_level_member(br#"{"a":"usage","b":1}"#, "usage"), None, "a string value is not a key");
    }

    #[test]
    fn element_members_are_read_at_each_objects_own_level() {
        let array = br#"[ {"index":1,"delta":{"tool_calls":[{"index":7,"id":"index"}],"content":"\"index\":3"},
            "finish_reason":"stop"}, {"delta":{},"finish_reason" : null,"index": 0}, {} ], "usage": {"index": 5}"#;
        let elements: Vec<_> = element_members(array, ["index", "finish_reason"]).collect();
        let starts = |values: &[Option<&[u8]>; 2]| values.map(|v| v.map(|v| v[..1].to_vec()));
        assert_eq!(
            elements.iter().map(starts).collect::<Vec<_>>(),
            [[Some(b"1".to_vec()), Some(b"\"".to_vec())], [Some(b"0".to_vec()), Some(b"n".to_vec())], [None, None]]
        );
        assert_eq!(element_members(b"[]", ["index"]).count(), 0);
        assert_eq!(element_members(b"null", ["index"]).count(), 0);
        assert_eq!(element_members(br#"[{"index":0,"delta":{"content":"cut"#, ["index"]).count(), 0);
    }

    #[test]
    fn a_trailing_member_is_found_from_the_end_or_by_the_forward_scan() {
        let last = br#"{"id":"x","choices":[{"message":{"content":"a \"usage\": {}"}}],
            "usage" : {"prompt_tokens":5,"details":{"n":[1,"}"]}} }
        "#;
        assert_eq!(last_member(last, "usage"), Some(&br#"{"prompt_tokens":5,"details":{"n":[1,"}"]}}"#[..]));
        assert_eq!(trailing_member(last, "usage"), last_member(last, "usage"));
        assert_eq!(last_member(br#"{"a":1,"usage":null}"#, "usage"), Some(&b"null"[..]));
        let not_last = br#"{"usage":{"prompt_tokens":2},"id":"x"}"#;
        assert_eq!(last_member(not_last, "usage"), None);
        assert_eq!(trailing_member(not_last, "usage"), Some(&br#"{"prompt_tokens":2}"#[..]));
        let nested = br#"{"a":{"b":1,"usage":{"n":1}}}"#;
        assert_eq!(trailing_member(nested, "usage"), None, "two closing braces: not a top-level member");
        let in_string = br#"{"a":"x\",\"usage\":{}}"}"#;
        assert_eq!(trailing_member(in_string, "usage"), None, "escaped quotes are not a key");
    }

    #[test]
    fn top_level_members_come_in_order_with_their_values() {
        let body = br#"{ "a" : 1, "b":{"c":[2,"]"]}, "d":"e,f" }"#;
        let members: Vec<_> = top_level_members(body).collect();
        assert_eq!(members, [(&b"a"[..], &b"1"[..]), (b"b", br#"{"c":[2,"]"]}"#), (b"d", br#""e,f""#)]);
    }

    #[test]
    fn malformed_bodies_find_nothing_rather_than_panic() {
        for body in [&b""[..], b"{", b"{\"usage\"", b"{\"usage\":", b"{\"usage\":1", b"}}{\"usage\":1}", b"{\"a\":\"\\"]
        {
            assert_eq!(top_level_member(body, "usage"), None, "{}", String::from_utf8_lossy(body));
            assert_eq!(trailing_member(body, "usage"), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn untouched_members_keep_their_bytes_and_order() {
        let input = br#"{"z": 1.50, "model":"a","messages":[ {"role":"user"} ],"x":{"k":  true}}"#;
        let mut object = RawObject::parse(input).unwrap();
        object.set_value("model", &"b");
        assert_eq!(
            object.to_bytes(),
            Bytes::from_static(br#"{"z":1.50,"model":"b","messages":[ {"role":"user"} ],"x":{"k":  true}}"#)
        );
    }

    #[test]
    fn rename_keeps_position_and_remove_drops() {
        let mut object = RawObject::parse(br#"{"a":1,"max_completion_tokens":5,"store":true}"#).unwrap();
        object.rename("max_completion_tokens", "max_tokens");
        object.remove("store");
        assert_eq!(object.to_bytes(), Bytes::from_static(br#"{"a":1,"max_tokens":5}"#));
    }

    #[test]
    fn a_layout_rebuilds_the_same_object_without_parsing_again() {
        let body = br#"{"model":"a","stream":true,"x":{"k":[1, 2]}}"#;
        let layout = Layout::of(body).unwrap();
        assert_eq!(layout.value(body, "x"), Some(&br#"{"k":[1, 2]}"#[..]));
        let mut object = RawObject::from_layout(body, &layout);
        object.set_value("model", &"b");
        assert_eq!(object.to_bytes(), Bytes::from_static(br#"{"model":"b","stream":true,"x":{"k":[1, 2]}}"#));
    }

    #[test]
    fn keys_are_borrowed_from_the_body_unless_escaped() {
        let body = br#"{"model":"a","max\u005ftokens":5}"#;
        let object = RawObject::parse(body).unwrap();
        assert!(matches!(object.members[0].0, Cow::Borrowed("model")));
        assert!(matches!(&object.members[1].0, Cow::Owned(key) if key == "max_tokens"));
        let layout = Layout::of(body).unwrap();
        assert_eq!(layout.members[0].0, Key::Span(2..7));
        assert_eq!(layout.value(body, "max_tokens"), Some(&b"5"[..]));
    }

    #[test]
    fn the_strict_pass_takes_what_serde_json_takes_with_the_same_spans_and_leaves_the_rest() {
        let taken: [&[u8]; 9] = [
            br#"{}"#,
            b" {\t\"model\" : \"a\" ,\r\n\"n\":-0.5E+3}\n",
            r#"{"messages":[{"role":"user","content":"say \"hi\"\n\u00e9\ud800 é"}],"x":[]}"#.as_bytes(),
            br#"{"a":[1,2.0,-3e7,{"b":{}},[null,true,false]],"a":0}"#,
            br#"{"":""}"#,
            br#"{"a":{"k\u0062":"v"}}"#,
            br#"{"a":1e0,"b":0,"c":-0}"#,
            br#"{"a":"\/\b\f\r\t"}"#,
            br#"{"a":"past the first sixteen bytes \"quoted\" \u0041 and on"}"#,
        ];
        for body in taken {
            let shown = String::from_utf8_lossy(body);
            let strict = strict::members(body).unwrap_or_else(|| panic!("the strict pass left {shown}"));
            assert_eq!(strict, Layout::parsed(body).unwrap().members, "{shown}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(strict::MAX_DEPTH), "]".repeat(strict::MAX_DEPTH));
        let left_to_serde: [&[u8]; 2] = [br#"{"max\u005ftokens":5}"#, deep.as_bytes()];
        for body in left_to_serde {
            assert!(strict::members(body).is_none());
            assert_eq!(Layout::of(body).unwrap(), Layout::parsed(body).unwrap());
        }
        let refused: [&[u8]; 17] = [
            b"",
            b"[]",
            br#"{"a":01}"#,
            br#"{"a":1,}"#,
            br#"{"a":1 "b":2}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":.5}"#,
            br#"{"a":1.}"#,
            br#"{"a":1e}"#,
            br#"{"a":tru}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"past the first sixteen bytes \x1f\"}",
            b"{\"a\":\"\xff\"}",
            br#"{"a":1} x"#,
            br#"{"a":{"b" 1}}"#,
        ];
        for body in refused {
            assert!(strict::members(body).is_none(), "{}", String::from_utf8_lossy(body));
            assert!(Layout::parsed(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// Any JSON value as text: whitespace, escapes, numbers of every form, nesting.
    fn json_text() -> impl Strategy<Value = String> {
        let space = prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n  "]);
        let string = r#"([a-z é✓]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,24}"#.prop_map(|text| format!("\"{text}\""));
        let number = "-?(0|[1-9][0-9]{0,4})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?";
        let leaf = prop_oneof![
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            number,
            string.clone()
        ];
        leaf.prop_recursive(5, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec((space.clone(), inner.clone(), space.clone()), 0..5).prop_map(|items| format!(
                    "[{}]",
                    items.iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect::<Vec<_>>().join(",")
                )),
                prop::collection::vec((string.clone(), space.clone(), inner), 0..5).prop_map(|members| format!(
                    "{{{}}}",
                    members.iter().map(|(k, s, v)| format!("{k}{s}:{s}{v}")).collect::<Vec<_>>().join(",")
                )),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        let space = prop::sample::select(vec!["", " ", "\n  "]);
        prop::collection::vec(("[a-z_]{0,8}", space, json_text()), 0..6).prop_map(|members| {
            let members: Vec<String> = members.iter().map(|(k, s, v)| format!("{s}\"{k}\"{s}:{s}{v}{s}")).collect();
            format!("{{{}}}", members.join(",")).into_bytes()
        })
    }

    proptest! {
        #[test]
        fn the_strict_pass_takes_valid_bodies_with_serde_json_s_spans(body in body()) {
            prop_assert_eq!(strict::members(&body), Some(Layout::parsed(&body).unwrap().members));
        }

        #[test]
        fn what_the_strict_pass_takes_of_broken_bodies_serde_json_takes_alike(
            body in body(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(b"{}[]\",:\\ 0.eE+-tnu\x01\xc3".to_vec())), 1..4),
        ) {
            let mut body = body;
            for (at, kind, byte) in edits {
                let at = at.index(body.len() + 1);
                match kind {
                    0 if at < body.len() => body[at] = byte,
                    1 if at < body.len() => { body.remove(at); }
                    _ => body.insert(at, byte),
                }
            }
            if let Some(members) = strict::members(&body) {
                prop_assert_eq!(Some(members), Layout::parsed(&body).ok().map(|layout| layout.members));
            }
        }
    }

    #[test]
    fn rejects_non_objects() {
        assert!(RawObject::parse(b"[1,2]").is_err());
        assert!(RawObject::parse(b"{\"a\":").is_err());
    }
}
