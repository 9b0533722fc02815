//! Key order of a request body. ComfyUI runs on Python dicts, which keep insertion order, and that
//! order decides which node runs first among ready ones and how `execution_cached` lists nodes.
//! `serde_json::Value` sorts keys, so the order is read once here, next to the value itself.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON document as a value plus the key order of every object in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ordered {
    Leaf(Value),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    /// Parses JSON text, keeping key order.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The plain value (later duplicate keys win, as in Python).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Leaf(v) => v.clone(),
            Self::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            Self::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The value under `key` of an object (the last one, like a Python dict).
    pub(crate) fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Self::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Keys of an object in first-seen order, without repeats.
    pub(crate) fn keys(&self) -> Vec<String> {
        let Self::Object(entries) = self else {
            return Vec::new();
        };
        // A set, not a scan of the keys so far: a 330,000-node graph would take minutes.
        let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
        entries
            .iter()
            .filter(|(k, _)| seen.insert(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Builds the order from a plain value (sorted keys), for bodies made in code.
    pub(crate) fn from_value(value: &Value) -> Self {
        match value {
            Value::Array(items) => Self::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::from_value(v)))
                    .collect(),
            ),
            leaf => Self::Leaf(leaf.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Ordered, E> {
        Ok(Ordered::Leaf(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Ordered, D::Error> {
        Ordered::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Ordered>()? {
            items.push(item);
        }
        Ok(Ordered::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
            entries.push((k, v));
        }
        Ok(Ordered::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_converts_to_value() {
        let doc = Ordered::parse(br#"{"prompt":{"1":{},"5":{},"3":{"inputs":{"b":1,"a":[1,2]}}}}"#)
            .unwrap();
        let prompt = doc.get("prompt").unwrap();
        assert_eq!(prompt.keys(), ["1", "5", "3"]);
        let inputs = prompt.get("3").unwrap().get("inputs").unwrap();
        assert_eq!(inputs.keys(), ["b", "a"]);
        assert_eq!(
            doc.to_value()["prompt"]["3"]["inputs"]["a"],
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn rejects_what_is_not_json() {
        assert!(Ordered::parse(b"{not json").is_err());
        assert!(Ordered::parse(b"").is_err());
    }
}
