//! Values that YAML lets a user write in more than one shape (a scalar of any
//! type, a command as a string or a list, `forEach` as a list or a map, a
//! flag as `true` or `"true"`). Their `Deserialize` impls are written by hand
//! so that a value of the wrong shape is reported as what the field accepts
//! ("expected a single value (text, number or true/false), found a
//! sequence"), never as serde's "did not match any variant of untagged enum
//! ScalarValue", which names a Rust type the user never wrote.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::component_doc::{DelimitedList, ForEach, SchemaVersion};
use super::recipe::ScalarValue;
use super::structure_test::CommandSpec;

/// Visits the scalar forms every value here accepts, turning each into `T`.
struct Scalars<T> {
    expecting: &'static str,
    make: fn(ScalarValue) -> Option<T>,
}

impl<'de, T> Visitor<'de> for Scalars<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.take(ScalarValue::Bool(v), de::Unexpected::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.take(ScalarValue::Integer(v), de::Unexpected::Signed(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => self.take(
                ScalarValue::String(v.to_string()),
                de::Unexpected::Unsigned(v),
            ),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.take(ScalarValue::Float(v), de::Unexpected::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.take(ScalarValue::String(v.to_string()), de::Unexpected::Str(v))
    }
}

impl<T> Scalars<T> {
    fn take<E: de::Error>(self, v: ScalarValue, shown: de::Unexpected<'_>) -> Result<T, E> {
        let expecting = self.expecting;
        (self.make)(v).ok_or_else(|| E::invalid_value(shown, &expecting))
    }
}

impl<'de> Deserialize<'de> for ScalarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Scalars {
            expecting: "a single value (text, number or true/false)",
            make: Some,
        })
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Scalars {
            expecting: "a schema version such as 1.0",
            make: |v| match v {
                ScalarValue::Float(f) => Some(SchemaVersion::Number(f)),
                ScalarValue::Integer(i) => Some(SchemaVersion::Number(i as f64)),
                ScalarValue::String(s) => Some(SchemaVersion::Text(s)),
                ScalarValue::Bool(_) => None,
            },
        })
    }
}

/// A flag written `true`/`false` or `"true"`/`"false"` (any case).
#[derive(Debug)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Scalars {
            expecting: "true or false",
            make: |v| match v {
                ScalarValue::Bool(b) => Some(Flag(b)),
                ScalarValue::String(t) => match t.to_ascii_lowercase().as_str() {
                    "true" => Some(Flag(true)),
                    "false" => Some(Flag(false)),
                    _ => None,
                },
                _ => None,
            },
        })
    }
}

/// `command:`: a string (2.0.0) or a list of strings (1.0.0).
struct CommandVisitor;

const COMMAND: &str =
    "a command: a string (schema 2.0.0) or a list of strings [program, args…] (schema 1.0.0)";

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = CommandSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(COMMAND)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandSpec, E> {
        Ok(CommandSpec::Program(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CommandSpec, A::Error> {
        Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
            .map(CommandSpec::Argv)
    }
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CommandVisitor)
    }
}

/// `forEach:`: a list of values, or `{list, delimiter}`.
struct ForEachVisitor;

impl<'de> Visitor<'de> for ForEachVisitor {
    type Value = ForEach;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of values, or a map {list, delimiter}")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ForEach, A::Error> {
        Vec::<ScalarValue>::deserialize(de::value::SeqAccessDeserializer::new(seq))
            .map(ForEach::List)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ForEach, A::Error> {
        DelimitedList::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(ForEach::Delimited)
    }
}

impl<'de> Deserialize<'de> for ForEach {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ForEachVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, String> {
        crate::yaml::decode::<T>(std::path::Path::new("x.yaml"), yaml).map_err(|d| d.to_string())
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        value: Option<ScalarValue>,
        command: Option<CommandSpec>,
        #[serde(rename = "forEach")]
        for_each: Option<ForEach>,
        flag: Option<Flag>,
    }

    #[test]
    fn every_shape_still_loads() {
        let d: Doc = decode("value: 8080\ncommand: [ls, -l]\nforEach: {list: a b, delimiter: ' '}\nflag: \"TRUE\"\n").unwrap();
        assert_eq!(d.value, Some(ScalarValue::Integer(8080)));
        assert_eq!(
            d.command,
            Some(CommandSpec::Argv(vec!["ls".into(), "-l".into()]))
        );
        assert!(d.flag.unwrap().0);
        let d: Doc = decode("value: x\ncommand: ls\nforEach: [1, two]\n").unwrap();
        assert_eq!(d.command, Some(CommandSpec::Program("ls".into())));
        assert!(matches!(d.for_each, Some(ForEach::List(l)) if l.len() == 2));
    }

    #[test]
    fn a_wrong_shape_names_what_is_accepted_not_a_rust_type() {
        for (yaml, accepted) in [
            (
                "value: [1, 2]\n",
                "a single value (text, number or true/false)",
            ),
            (
                "command: {a: 1}\n",
                "a string (schema 2.0.0) or a list of strings",
            ),
            (
                "forEach: 3\n",
                "a list of values, or a map {list, delimiter}",
            ),
            ("flag: maybe\n", "true or false"),
        ] {
            let e = decode::<Doc>(yaml).unwrap_err();
            assert!(e.contains(accepted), "{yaml}: {e}");
            assert!(!e.contains("untagged") && !e.contains("ScalarValue"), "{e}");
            assert!(e.contains("x.yaml:1:"), "{e}");
            let field = yaml.split(':').next().unwrap();
            assert!(
                e.contains(&format!("`{field}`: invalid")),
                "names the field: {e}"
            );
        }
    }
}
