//! Typed access to a method's positional params. Every accessor answers a
//! wrong type with `Match failed` naming the param, never a panic.

use crate::error::MethodError;
use crate::time::{Millis, parse_date};
use serde_json::{Map, Value};

pub struct Params(pub Vec<Value>);

impl Params {
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// Missing and `null` both count as absent.
    fn present(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }

    pub fn str(&self, i: usize, field: &str) -> Result<&str, MethodError> {
        match self.present(i) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(MethodError::matching(field, "a string")),
        }
    }

    pub fn opt_str(&self, i: usize, field: &str) -> Result<Option<&str>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(MethodError::matching(field, "a string")),
        }
    }

    pub fn opt_bool(&self, i: usize, field: &str) -> Result<Option<bool>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(MethodError::matching(field, "a boolean")),
        }
    }

    pub fn obj(&self, i: usize, field: &str) -> Result<&Map<String, Value>, MethodError> {
        match self.present(i) {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(MethodError::matching(field, "an object")),
        }
    }

    pub fn opt_obj(&self, i: usize, field: &str) -> Result<Option<&Map<String, Value>>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(MethodError::matching(field, "an object")),
        }
    }

    pub fn opt_str_list(&self, i: usize, field: &str) -> Result<Vec<String>, MethodError> {
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
    pub fn opt_date(&self, i: usize, field: &str) -> Result<Option<Millis>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(v) => parse_date(v)
                .map(Some)
                .ok_or_else(|| MethodError::matching(field, "a {\"$date\": ms} date or null")),
        }
    }

    pub fn opt_uint(&self, i: usize, field: &str) -> Result<Option<u64>, MethodError> {
        match self.present(i) {
            None => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| MethodError::matching(field, "a non-negative integer"))
            }
        }
    }
}

/// A field of an object param.
pub fn field_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, MethodError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MethodError::matching(key, "a string")),
    }
}

/// A boolean setting value; Rocket.Chat clients sometimes send `"true"`.
pub fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}
