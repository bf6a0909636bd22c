//! The CEL types of a structural schema, as kube-apiserver derives them
//! (`SchemaDeclType` in k8s.io/apiserver/pkg/cel/common/schemas.go): each carries the
//! smallest size its JSON can take and the most elements (bytes of a string, items of a
//! list, entries of a map) it can hold within one request. Cost estimation multiplies by
//! these, which is why an unbounded string or list makes a rule expensive.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;

/// kube-apiserver's request size limit (`DefaultMaxRequestSizeBytes`).
pub const MAX_REQUEST_SIZE_BYTES: u64 = 3 * 1024 * 1024;
// Serialized sizes from k8s.io/apiserver/pkg/cel/types.go.
const MIN_STRING_SIZE: u64 = 2;
const MIN_BOOL_SIZE: u64 = 4;
const MIN_NUMBER_SIZE: u64 = 1;
const MIN_DURATION_SIZE_JSON: u64 = 3;
const MAX_DURATION_SIZE_JSON: u64 = 32;
const JSON_DATE_SIZE: u64 = 12;
const MIN_DATETIME_SIZE_JSON: u64 = 21;
const MAX_DATETIME_SIZE_JSON: u64 = 32;

#[derive(Clone, Debug)]
pub enum Ty {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    List(Rc<Decl>),
    Map(Rc<Decl>, Rc<Decl>),
    Object(Rc<BTreeMap<String, Decl>>),
    /// A type value, such as `int` in `type(x) == int`.
    Type,
    /// A Kubernetes library type: `Quantity`, `URL`, `IP`, `CIDR`, `Semver`, `Format`.
    Opaque(&'static str),
    /// `oldSelf` of a rule with `optionalOldSelf: true`.
    Optional(Rc<Decl>),
}

impl Ty {
    /// Types whose values have a fixed size, which cel-go's estimator sizes as 1.
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Timestamp
        )
    }

    /// The name cel-go prints in type errors.
    pub fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Null => "null".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "duration".into(),
            Ty::Timestamp => "timestamp".into(),
            Ty::List(e) => format!("list({})", e.ty.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.ty.name(), v.ty.name()),
            Ty::Object(_) => "object".into(),
            Ty::Type => "type".into(),
            Ty::Opaque(name) => (*name).into(),
            Ty::Optional(d) => format!("optional_type({})", d.ty.name()),
        }
    }

    /// Whether values of the two types can meet in one overload (dyn meets anything).
    pub fn unifies(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => true,
            (Ty::List(a), Ty::List(b)) => a.ty.unifies(&b.ty),
            (Ty::Map(ak, av), Ty::Map(bk, bv)) => ak.ty.unifies(&bk.ty) && av.ty.unifies(&bv.ty),
            // Schema objects are structurally typed by the fields they declare.
            (Ty::Object(_), Ty::Object(_)) => true,
            (Ty::Opaque(a), Ty::Opaque(b)) => a == b,
            (Ty::Optional(a), Ty::Optional(b)) => a.ty.unifies(&b.ty),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// A type with the bounds kube-apiserver's size estimator reads.
#[derive(Clone, Debug)]
pub struct Decl {
    pub ty: Ty,
    /// `MaxElements`: bytes for strings, items for lists, entries for maps; 0 where the
    /// schema type has none (scalars, objects).
    pub max_elements: u64,
    /// `MinSerializedSize`: the fewest bytes a value of this type takes in JSON.
    pub min_size: u64,
}

impl Decl {
    pub fn simple(ty: Ty, min_size: u64) -> Decl {
        Decl {
            ty,
            max_elements: 0,
            min_size,
        }
    }
}

/// How the schema is typed in one Kubernetes release.
#[derive(Clone, Copy, Debug)]
pub struct Typing {
    /// A string enum is as long as its longest value (Kubernetes 1.29 on); before, an enum
    /// without `maxLength` counted as unbounded.
    pub enum_sized: bool,
}

/// The type of a schema node; `None` where kube-apiserver declares none (no type, or an
/// array without items), so rules cannot reach it.
pub fn of_schema(s: &Value, resource_root: bool, typing: Typing) -> Option<Decl> {
    if s["x-kubernetes-int-or-string"] == true {
        return Some(Decl {
            ty: Ty::Dyn,
            max_elements: MAX_REQUEST_SIZE_BYTES - 2,
            min_size: 1,
        });
    }
    match s["type"].as_str()? {
        "array" => {
            let items = of_schema(
                &s["items"],
                s["items"]["x-kubernetes-embedded-resource"] == true,
                typing,
            )?;
            let max_items = match s["maxItems"].as_i64() {
                Some(n) => n.max(0) as u64,
                // 2 bytes for "[]", then items and commas.
                None => (MAX_REQUEST_SIZE_BYTES - 2) / (items.min_size + 1),
            };
            Some(Decl {
                ty: Ty::List(Rc::new(items)),
                max_elements: max_items,
                min_size: 2,
            })
        }
        "object" => match s.get("additionalProperties").filter(|a| a.is_object()) {
            Some(props) => {
                let values = of_schema(
                    props,
                    props["x-kubernetes-embedded-resource"] == true,
                    typing,
                )?;
                let max_properties = match s["maxProperties"].as_i64() {
                    Some(n) => n.max(0) as u64,
                    // A key of at least `""`, a colon, a comma and the smallest value.
                    None => (MAX_REQUEST_SIZE_BYTES - 2) / (values.min_size + 6),
                };
                // Keys are the plain string type, whose size the estimator reads as 0.
                let keys = Decl::simple(Ty::String, MIN_STRING_SIZE);
                Some(Decl {
                    ty: Ty::Map(Rc::new(keys), Rc::new(values)),
                    max_elements: max_properties,
                    min_size: 2,
                })
            }
            None => Some(object(s, resource_root, typing)),
        },
        "string" => Some(match s["format"].as_str() {
            Some("byte") => Decl {
                ty: Ty::Bytes,
                max_elements: string_max_length(s, MAX_REQUEST_SIZE_BYTES - 2),
                min_size: MIN_STRING_SIZE,
            },
            Some("duration") => Decl {
                ty: Ty::Duration,
                max_elements: MAX_DURATION_SIZE_JSON,
                min_size: MIN_DURATION_SIZE_JSON,
            },
            Some("date") => Decl {
                ty: Ty::Timestamp,
                max_elements: JSON_DATE_SIZE,
                min_size: JSON_DATE_SIZE,
            },
            Some("date-time") => Decl {
                ty: Ty::Timestamp,
                max_elements: MAX_DATETIME_SIZE_JSON,
                min_size: MIN_DATETIME_SIZE_JSON,
            },
            _ => string(Some(s), typing),
        }),
        "boolean" => Some(Decl::simple(Ty::Bool, MIN_BOOL_SIZE)),
        "number" => Some(Decl::simple(Ty::Double, MIN_NUMBER_SIZE)),
        "integer" => Some(Decl::simple(Ty::Int, MIN_NUMBER_SIZE)),
        _ => None,
    }
}

/// A plain string: `maxLength` counts code points, which take up to 4 bytes each; without
/// it, an enum's longest value, else the whole request.
fn string(s: Option<&Value>, typing: Typing) -> Decl {
    let max_elements = match s {
        Some(s) => match s["maxLength"].as_i64() {
            Some(n) => n.max(0) as u64 * 4,
            None => match s["enum"].as_array() {
                Some(values) if typing.enum_sized && !values.is_empty() => values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|v| v.len() as u64)
                    .max()
                    .unwrap_or(0),
                _ => MAX_REQUEST_SIZE_BYTES - 2,
            },
        },
        None => MAX_REQUEST_SIZE_BYTES - 2,
    };
    Decl {
        ty: Ty::String,
        max_elements,
        min_size: MIN_STRING_SIZE,
    }
}

fn string_max_length(s: &Value, unbounded: u64) -> u64 {
    s["maxLength"]
        .as_i64()
        .map_or(unbounded, |n| n.max(0) as u64)
}

fn object(s: &Value, resource_root: bool, typing: Typing) -> Decl {
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = BTreeMap::new();
    // "{}", then each required property without a default: its name in quotes, a colon,
    // a comma and its smallest value.
    let mut min_size = 2;
    if let Some(props) = s["properties"].as_object() {
        for (name, prop) in props {
            let Some(decl) =
                of_schema(prop, prop["x-kubernetes-embedded-resource"] == true, typing)
            else {
                continue;
            };
            if required.contains(&name.as_str()) && prop.get("default").is_none() {
                min_size += name.len() as u64 + decl.min_size + 4;
            }
            if let Some(escaped) = escape(name) {
                fields.insert(escaped, decl);
            }
        }
    }
    // The root of a resource (and an embedded resource) always has these: kept as declared
    // when the schema declares all of them as strings, else replaced by unbounded ones
    // (`WithTypeAndObjectMeta`).
    if resource_root || s["x-kubernetes-embedded-resource"] == true {
        let props = &s["properties"];
        let is_string = |v: &Value| v["type"] == "string";
        let declared = is_string(&props["kind"])
            && is_string(&props["apiVersion"])
            && is_string(&props["metadata"]["properties"]["name"])
            && is_string(&props["metadata"]["properties"]["generateName"]);
        if !declared {
            for name in ["apiVersion", "kind"] {
                fields.insert(name.to_string(), string(None, typing));
            }
            let mut metadata = BTreeMap::new();
            metadata.insert("name".to_string(), string(None, typing));
            metadata.insert("generateName".to_string(), string(None, typing));
            fields.insert(
                "metadata".into(),
                Decl::simple(Ty::Object(Rc::new(metadata)), 2),
            );
        }
    }
    Decl::simple(Ty::Object(Rc::new(fields)), min_size)
}

/// How a property name is spelled in CEL (k8s.io/apiserver/pkg/cel/escaping.go); `None`
/// for names CEL cannot reach.
pub fn escape(name: &str) -> Option<String> {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    let starts_ok = out
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_ok.then_some(out)
}
