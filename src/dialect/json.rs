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
    fn rejects_non_objects() {
        assert!(RawObject::parse(b"[1,2]").is_err());
        assert!(RawObject::parse(b"{\"a\":").is_err());
    }
}
