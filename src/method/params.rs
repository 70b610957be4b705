//! Typed access to a method's positional params. Every accessor answers a
//! wrong type with `Match failed` naming the param, never a panic.

use crate::error::MethodError;
use crate::time::{Millis, parse_date};
use serde_json::{Map, Value};

pub(super) struct Params(pub Vec<Value>);

impl Params {
    pub(super) fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// Missing and `null` both count as absent.
    fn present(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }

    pub(super) fn str(&self, i: usize, field: &str) -> Result<&str, MethodError> {
        match self.present(i) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(MethodError::matching(field, "a string")),
        }
    }

    pub(super) fn opt_str(&self, i: usize, field: &str) -> Result<Option<&str>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(MethodError::matching(field, "a string")),
        }
    }

    pub(super) fn opt_bool(&self, i: usize, field: &str) -> Result<Option<bool>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(MethodError::matching(field, "a boolean")),
        }
    }

    pub(super) fn obj(&self, i: usize, field: &str) -> Result<&Map<String, Value>, MethodError> {
        match self.present(i) {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(MethodError::matching(field, "an object")),
        }
    }

    pub(super) fn opt_obj(&self, i: usize, field: &str) -> Result<Option<&Map<String, Value>>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(MethodError::matching(field, "an object")),
        }
    }

    pub(super) fn opt_str_list(&self, i: usize, field: &str) -> Result<Vec<String>, MethodError> {
        match self.present(i) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| MethodError::matching(field, "an array of strings"))
                })
                .collect(),
            Some(_) => Err(MethodError::matching(field, "an array of strings")),
        }
    }

    /// An EJSON date or `null`.
    pub(super) fn opt_date(&self, i: usize, field: &str) -> Result<Option<Millis>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(v) => parse_date(v)
                .map(Some)
                .ok_or_else(|| MethodError::matching(field, "a {\"$date\": ms} date or null")),
        }
    }

    pub(super) fn opt_uint(&self, i: usize, field: &str) -> Result<Option<u64>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| MethodError::matching(field, "a non-negative integer"))
            }
        }
    }
}

/// A field of an object param.
pub(super) fn field_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, MethodError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MethodError::matching(key, "a string")),
    }
}

/// A boolean setting value; Rocket.Chat clients sometimes send `"true"`.
pub(super) fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Characters a display name may not hold: control characters (Cc), format
/// characters (Cf: bidi overrides and isolates, zero-width joiners and
/// spaces, the BOM, invisible operators, tags) and line/paragraph
/// separators (Zl, Zp). They let one name pose as another or reorder the
/// text around it. Cf is listed by hand (Unicode 15.1): it changes rarely,
/// and no dependency is needed for a few ranges. Two of them have a visible
/// use that [`display_name`] allows in place: the joiner inside an emoji
/// sequence and the tags of a subdivision flag.
pub(super) fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

const ZWJ: char = '\u{200D}';
const CANCEL_TAG: char = '\u{E007F}';
const BLACK_FLAG: char = '\u{1F3F4}';

/// Characters an emoji ZWJ sequence joins: the blocks that hold
/// Unicode's Extended_Pictographic characters (and the skin-tone
/// modifiers). A superset is harmless here: it only decides whether a
/// joiner sits between two pictures rather than between letters.
fn is_pictographic(c: char) -> bool {
    matches!(
        c,
        '\u{00A9}'
            | '\u{00AE}'
            | '\u{203C}'
            | '\u{2049}'
            | '\u{2122}'
            | '\u{2139}'
            | '\u{2190}'..='\u{21FF}'
            | '\u{2300}'..='\u{23FF}'
            | '\u{24C2}'
            | '\u{25A0}'..='\u{25FF}'
            | '\u{2600}'..='\u{27BF}'
            | '\u{2934}'..='\u{2935}'
            | '\u{2B00}'..='\u{2BFF}'
            | '\u{3030}'
            | '\u{303D}'
            | '\u{3297}'
            | '\u{3299}'
            | '\u{1F000}'..='\u{1FFFD}'
    )
}

/// Variation selectors (text/emoji presentation, U+FE00–U+FE0F) may sit
/// between a picture and its joiner (`🏳️‍🌈`).
fn is_variation_selector(c: char) -> bool {
    ('\u{FE00}'..='\u{FE0F}').contains(&c)
}

/// The first hidden character of `name` that is not part of an emoji
/// sequence: a joiner (U+200D) is allowed between two pictographic
/// characters (variation selectors may precede it), and tag characters
/// (U+E0020–U+E007E, closed by U+E007F) right after U+1F3F4, as in the
/// flag of England.
fn first_hidden(name: &str) -> Option<char> {
    let chars: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == BLACK_FLAG {
            // A tag sequence: tags up to the cancel tag, all or nothing.
            let tags = chars[i + 1..].iter().take_while(|t| ('\u{E0020}'..='\u{E007E}').contains(*t)).count();
            if tags > 0 && chars.get(i + 1 + tags) == Some(&CANCEL_TAG) {
                i += tags + 2;
                continue;
            }
        } else if c == ZWJ {
            let before = chars[..i].iter().rev().find(|b| !is_variation_selector(**b));
            let after = chars.get(i + 1);
            if before.is_some_and(|b| is_pictographic(*b)) && after.is_some_and(|a| is_pictographic(*a)) {
                i += 1;
                continue;
            }
        }
        if is_hidden_char(c) {
            return Some(c);
        }
        i += 1;
    }
    None
}

/// A guest's display name: trimmed, NFC-normalised (so one name has one
/// spelling), 1 to `max` Unicode scalar values (what Rust's `chars` and
/// JavaScript's `[...s]` count: `👩‍💻` is 3), none of them hidden
/// ([`is_hidden_char`]) outside an emoji sequence ([`first_hidden`]).
///
/// Scalar values rather than graphemes: the count is the same in every
/// client whatever its Unicode version, and it bounds the stored size
/// (a single grapheme may hold any number of combining marks).
///
/// The two refusals differ (`expected`), so a client can tell the person
/// which one it is.
pub(super) fn display_name(raw: &str, field: &str, max: usize) -> Result<String, MethodError> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = raw.trim().nfc().collect();
    if let Some(c) = first_hidden(&name) {
        return Err(MethodError::matching(
            field,
            format!("free of control, format and separator characters (found U+{:04X})", c as u32),
        ));
    }
    let len = name.chars().count();
    if len == 0 || len > max {
        return Err(MethodError::matching(field, format!("1 to {max} characters after trimming")));
    }
    Ok(name)
}

/// Largest `customFields`, as compact JSON.
pub(super) const MAX_CUSTOM_FIELDS_BYTES: usize = 8 * 1024;
/// Deepest nesting of objects and arrays in `customFields`, the object
/// itself counting as 1.
pub(super) const MAX_CUSTOM_FIELDS_DEPTH: usize = 4;

/// Checks `customFields`: keys that would reach an object's prototype in a
/// JavaScript client (`__proto__`, `constructor`, `prototype`) or be read as
/// operators or paths by a document store (`$…`, `a.b`) are refused at any
/// depth, as are objects larger or deeper than the limits above.
pub(super) fn custom_fields(o: &Map<String, Value>) -> Result<(), MethodError> {
    let size = serde_json::to_vec(o).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > MAX_CUSTOM_FIELDS_BYTES {
        return Err(MethodError::matching(
            "customFields",
            format!("an object of at most {MAX_CUSTOM_FIELDS_BYTES} bytes as JSON"),
        ));
    }
    check_object(o, 1)
}

fn check_object(o: &Map<String, Value>, depth: usize) -> Result<(), MethodError> {
    let bad_key = |k: &str| {
        matches!(k, "__proto__" | "constructor" | "prototype") || k.starts_with('$') || k.contains('.')
    };
    if o.keys().any(|k| bad_key(k)) {
        return Err(MethodError::matching(
            "customFields",
            "an object without keys __proto__, constructor or prototype, starting with $ or containing .",
        ));
    }
    o.values().try_for_each(|v| check_value(v, depth))
}

/// `v` sits inside a container at `depth`.
fn check_value(v: &Value, depth: usize) -> Result<(), MethodError> {
    let nested = matches!(v, Value::Object(_) | Value::Array(_));
    if nested && depth >= MAX_CUSTOM_FIELDS_DEPTH {
        return Err(MethodError::matching(
            "customFields",
            format!("an object nested at most {MAX_CUSTOM_FIELDS_DEPTH} levels deep"),
        ));
    }
    match v {
        Value::Object(o) => check_object(o, depth + 1),
        Value::Array(a) => a.iter().try_for_each(|v| check_value(v, depth + 1)),
        _ => Ok(()),
    }
}
