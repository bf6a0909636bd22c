//! The functions and operators rules call: which argument types each accepts, what it
//! yields, and what it costs (cel-go's `functionCost`, then Kubernetes'
//! `library/cost.go` `EstimateCallCost` for its own libraries).

use std::rc::Rc;

use kube_cel::cel::common::ast::{CallExpr, Expr, LiteralValue};

use super::decl::{Decl, Ty};
use super::estimate::{Estimator, Node};
use super::range::Range;

/// cel-go's `common.StringTraversalCostFactor`.
const STRING_TRAVERSAL: f64 = 0.1;
/// cel-go's `common.RegexStringLengthCostFactor`.
const REGEX_LENGTH: f64 = 0.25;

impl Estimator {
    /// The result type, the function's own cost and the result's size, or `None` when no
    /// overload accepts these arguments.
    pub(super) fn overload(
        &self,
        name: &str,
        target: Option<&Node>,
        args: &[Node],
        call: &CallExpr,
    ) -> Option<(Ty, Range, Option<Range>)> {
        let one = Range::exact(1);
        let arg = |i: usize| args.get(i).map(|n| &n.ty);
        let is =
            |i: usize, f: fn(&Ty) -> bool| arg(i).is_some_and(|t| matches!(t, Ty::Dyn) || f(t));
        let simple = |ty: Ty| Some((ty, one, None));
        match (name, target) {
            ("_==_" | "_!=_", None) if args.len() == 2 => {
                if !args[0].ty.unifies(&args[1].ty) && !null_comparison(&args[0].ty, &args[1].ty) {
                    return None;
                }
                // Kubernetes prices `==` (only) of its library types itself; `!=` of them
                // falls to cel-go, which cannot size them.
                let cost = match (name, &args[0].ty, &args[1].ty) {
                    ("_==_", Ty::Opaque("Format"), Ty::Opaque("Format")) => {
                        Range { min: 1, max: 64 }.factor(STRING_TRAVERSAL)
                    }
                    ("_==_", Ty::Opaque(a), Ty::Opaque(b)) if a == b => one,
                    _ => self.compare_cost(&args[0], &args[1]),
                };
                Some((Ty::Bool, cost, None))
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None) if args.len() == 2 => {
                let (a, b) = (&args[0].ty, &args[1].ty);
                let ordered = matches!(
                    a,
                    Ty::Bool | Ty::String | Ty::Bytes | Ty::Duration | Ty::Timestamp | Ty::Dyn
                ) || is_number(a);
                let cross_numeric =
                    self.release.libraries >= CROSS_TYPE_NUMERIC && is_number(a) && is_number(b);
                let comparable = a.unifies(b) || cross_numeric;
                if !(ordered && comparable) {
                    return None;
                }
                let cost = if is_string_like(a) || is_string_like(b) {
                    self.compare_cost(&args[0], &args[1])
                } else {
                    one
                };
                Some((Ty::Bool, cost, None))
            }
            ("_&&_" | "_||_", None) if args.len() == 2 => {
                if !is(0, |t| matches!(t, Ty::Bool)) || !is(1, |t| matches!(t, Ty::Bool)) {
                    return None;
                }
                let (l, r) = (args[0].cost, args[1].cost);
                Some((
                    Ty::Bool,
                    Range {
                        min: l.min,
                        max: l.add(r).max,
                    },
                    None,
                ))
            }
            ("!_" | "@not_strictly_false", None) if is(0, |t| matches!(t, Ty::Bool)) => {
                simple(Ty::Bool)
            }
            ("_?_:_", None) if args.len() == 3 => {
                if !is(0, |t| matches!(t, Ty::Bool)) || !args[1].ty.unifies(&args[2].ty) {
                    return None;
                }
                let ty = if matches!(args[1].ty, Ty::Dyn) {
                    args[2].ty.clone()
                } else {
                    args[1].ty.clone()
                };
                let size = self.size(&args[1]).union(self.size(&args[2]));
                let cost = args[0].cost.add(args[1].cost.union(args[2].cost));
                Some((ty, cost, Some(size)))
            }
            ("_+_", None) if args.len() == 2 => self.add(&args[0], &args[1]),
            ("_-_" | "_*_" | "_/_" | "_%_", None) if args.len() == 2 => {
                arithmetic(name, &args[0].ty, &args[1].ty).map(|t| (t, one, None))
            }
            ("-_", None) if is(0, |t| matches!(t, Ty::Int | Ty::Double)) => {
                simple(args[0].ty.clone())
            }
            ("_[_]", None) if args.len() == 2 => {
                let ty = match (&args[0].ty, &args[1].ty) {
                    (Ty::List(e), Ty::Int | Ty::Dyn) => e.ty.clone(),
                    (Ty::Map(k, v), key) if k.ty.unifies(key) => v.ty.clone(),
                    (Ty::Dyn, _) => Ty::Dyn,
                    _ => return None,
                };
                simple(ty)
            }
            // `in` a list traverses it; `in` a map is a lookup.
            ("@in", None) if args.len() == 2 => match &args[1].ty {
                Ty::List(e) if e.ty.unifies(&args[0].ty) => {
                    Some((Ty::Bool, self.size(&args[1]), None))
                }
                Ty::Dyn => Some((Ty::Bool, self.size(&args[1]), None)),
                Ty::Map(k, _) if k.ty.unifies(&args[0].ty) => simple(Ty::Bool),
                _ => None,
            },
            ("size", _) => {
                let subject = target.map(|t| &t.ty).or(arg(0))?;
                matches!(
                    subject,
                    Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..) | Ty::Dyn
                )
                .then(|| (Ty::Int, one, None))
            }
            // Only the member form `s.matches(re)` is priced by its sizes (cel-go's
            // `matches_string`); the global `matches(s, re)` costs 1.
            ("matches", Some(t)) if string_or_dyn(&t.ty) && is(0, string_or_dyn) => {
                let text_cost = self.size(t).add(Range::exact(1)).factor(STRING_TRAVERSAL);
                let regex_cost = self.size(&args[0]).factor(REGEX_LENGTH);
                Some((Ty::Bool, text_cost.multiply(regex_cost), None))
            }
            ("matches", None)
                if args.len() == 2 && is(0, string_or_dyn) && is(1, string_or_dyn) =>
            {
                simple(Ty::Bool)
            }
            ("contains", Some(t)) if string_or_dyn(&t.ty) && is(0, string_or_dyn) => {
                let cost = self
                    .size(t)
                    .factor(STRING_TRAVERSAL)
                    .multiply(self.size(&args[0]).factor(STRING_TRAVERSAL));
                Some((Ty::Bool, cost, None))
            }
            ("startsWith" | "endsWith", Some(t))
                if string_or_dyn(&t.ty) && is(0, string_or_dyn) =>
            {
                Some((Ty::Bool, self.size(&args[0]).factor(STRING_TRAVERSAL), None))
            }
            ("lowerAscii" | "upperAscii" | "trim" | "substring", Some(t))
                if string_or_dyn(&t.ty) =>
            {
                let size = self.size(t);
                Some((Ty::String, size.factor(STRING_TRAVERSAL), Some(size)))
            }
            ("indexOf" | "lastIndexOf", Some(t)) if string_or_dyn(&t.ty) => {
                Some((Ty::Int, self.size(t).factor(STRING_TRAVERSAL), None))
            }
            ("isSorted" | "sum" | "min" | "max" | "indexOf" | "lastIndexOf", Some(t))
                if matches!(t.ty, Ty::Dyn) =>
            {
                simple(Ty::Dyn)
            }
            ("isSorted" | "sum" | "min" | "max" | "indexOf" | "lastIndexOf", Some(t))
                if matches!(t.ty, Ty::List(_)) =>
            {
                let Ty::List(elem) = &t.ty else { return None };
                let mut per_item = one;
                if is_string_like(&elem.ty) {
                    per_item = per_item.add(self.element_size(t).factor(STRING_TRAVERSAL));
                }
                let ty = match name {
                    "isSorted" => Ty::Bool,
                    "indexOf" | "lastIndexOf" => Ty::Int,
                    _ => elem.ty.clone(),
                };
                Some((ty, self.size(t).multiply(per_item), None))
            }
            ("split", Some(t)) if string_or_dyn(&t.ty) => {
                let size = self.size(t);
                let limit = match call.args.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::Int(n))) => **n as u64,
                    _ => size.max,
                };
                let list = Ty::List(Rc::new(Decl::simple(Ty::String, 2)));
                Some((
                    list,
                    size.factor(2.0 * STRING_TRAVERSAL),
                    Some(Range { min: 0, max: limit }),
                ))
            }
            ("replace", Some(t)) if string_or_dyn(&t.ty) && args.len() >= 2 => {
                let size = self.size(t);
                let result = replaced_size(size, self.size(&args[0]), self.size(&args[1]));
                Some((
                    Ty::String,
                    size.factor(2.0 * STRING_TRAVERSAL),
                    Some(result),
                ))
            }
            ("join", Some(t)) if matches!(t.ty, Ty::List(_) | Ty::Dyn) => {
                let items = self.size(t);
                let item = match &t.ty {
                    Ty::List(_) => self.element_size(t),
                    _ => Range::exact(0),
                };
                let mut size = items.multiply(item);
                if let Some(separator) = args.first() {
                    let gaps = Range {
                        min: items.min.saturating_sub(1),
                        max: items.max.saturating_sub(1),
                    };
                    size = size.add(self.size(separator).multiply(gaps));
                }
                Some((Ty::String, size.factor(STRING_TRAVERSAL), Some(size)))
            }
            ("sets.contains" | "sets.intersects" | "sets.equivalent", None)
                if args.len() == 2 && self.release.libraries >= SETS =>
            {
                let lists = matches!(args[0].ty, Ty::List(_) | Ty::Dyn)
                    && matches!(args[1].ty, Ty::List(_) | Ty::Dyn);
                let factor = if name == "sets.equivalent" { 2.0 } else { 1.0 };
                let cost = self
                    .size(&args[0])
                    .multiply(self.size(&args[1]))
                    .factor(factor)
                    .add(one);
                lists.then_some((Ty::Bool, cost, None))
            }
            ("find" | "findAll", Some(t)) if string_or_dyn(&t.ty) => {
                let size = self.size(t);
                let text_cost = size.add(Range::exact(1)).factor(STRING_TRAVERSAL);
                let regex_cost = self.size(args.first()?).factor(REGEX_LENGTH);
                let ty = if name == "find" {
                    Ty::String
                } else {
                    Ty::List(Rc::new(Decl::simple(Ty::String, 2)))
                };
                Some((
                    ty,
                    text_cost.multiply(regex_cost),
                    Some(Range {
                        min: 0,
                        max: size.max,
                    }),
                ))
            }
            // Kubernetes' estimator prices these by their argument (cel-go 0.23 hands it a
            // target even for global calls, so `quantity(x)` is priced like `x.lowerAscii()`).
            (
                "url" | "quantity" | "isQuantity" | "ip" | "isIP" | "cidr" | "isCIDR" | "semver"
                | "isSemver" | "ip.isCanonical",
                None,
            ) if args.len() == 1 && is(0, string_or_dyn) => {
                let (ty, since) = match name {
                    "url" => (Ty::Opaque("URL"), 0),
                    "quantity" => (Ty::Opaque("Quantity"), QUANTITY),
                    "isQuantity" => (Ty::Bool, QUANTITY),
                    "ip" => (Ty::Opaque("IP"), IP),
                    "cidr" => (Ty::Opaque("CIDR"), IP),
                    "semver" => (Ty::Opaque("Semver"), SEMVER),
                    "isSemver" => (Ty::Bool, SEMVER),
                    _ => (Ty::Bool, IP),
                };
                let factor = if name == "ip.isCanonical" {
                    2.0 * STRING_TRAVERSAL
                } else {
                    STRING_TRAVERSAL
                };
                (self.release.libraries >= since)
                    .then(|| (ty, self.size(&args[0]).factor(factor), None))
            }
            ("containsIP" | "containsCIDR", Some(t))
                if matches!(t.ty, Ty::Opaque("CIDR") | Ty::Dyn) && args.len() == 1 =>
            {
                // An address is 4 to 16 bytes; a string argument is parsed first.
                let address = Range { min: 4, max: 16 };
                let mut cost = address.add(address).factor(STRING_TRAVERSAL);
                if name == "containsCIDR" {
                    cost = cost.add(address.factor(STRING_TRAVERSAL)).add(one);
                }
                if matches!(args[0].ty, Ty::String) {
                    cost = cost.add(self.size(&args[0]).factor(STRING_TRAVERSAL));
                }
                Some((Ty::Bool, cost, None))
            }
            ("duration" | "timestamp", None) if args.len() == 1 => {
                let ty = if name == "duration" {
                    Ty::Duration
                } else {
                    Ty::Timestamp
                };
                let ok = matches!(args[0].ty, Ty::String | Ty::Dyn)
                    || std::mem::discriminant(&args[0].ty) == std::mem::discriminant(&ty)
                    || (name == "timestamp" && matches!(args[0].ty, Ty::Int));
                ok.then_some((ty, one, None))
            }
            // `dyn(x)` costs 1 (and keeps the size of `x` from cel-go 0.23).
            ("dyn", None) if args.len() == 1 => {
                let size = self.size(&args[0]);
                let keep = self.release.dyn_keeps_size && size != Range::UNKNOWN_SIZE;
                Some((Ty::Dyn, one, keep.then_some(size)))
            }
            ("int" | "uint" | "double" | "string" | "bool" | "bytes" | "type", None)
                if args.len() == 1 =>
            {
                let ty = match name {
                    "int" => Ty::Int,
                    "uint" => Ty::Uint,
                    "double" => Ty::Double,
                    "string" => Ty::String,
                    "bool" => Ty::Bool,
                    "bytes" => Ty::Bytes,
                    _ => Ty::Type,
                };
                let size = self.size(&args[0]);
                // A byte is one character; a character up to four bytes.
                match (name, &args[0].ty) {
                    ("string", Ty::Bytes) => Some((
                        ty,
                        size.factor(STRING_TRAVERSAL),
                        Some(Range {
                            min: size.min / 4,
                            max: size.max,
                        }),
                    )),
                    ("bytes", Ty::String) => Some((
                        ty,
                        size.factor(STRING_TRAVERSAL),
                        Some(Range {
                            min: size.min,
                            max: size.max.wrapping_mul(4),
                        }),
                    )),
                    _ => Some((ty, one, None)),
                }
            }
            _ => {
                let ty = library_function(name, target.map(|t| &t.ty), self.release.libraries)?;
                simple(ty)
            }
        }
    }

    /// Whether the release's library set declares a function of that name at all (a call
    /// no overload of which fits is a different error from a function that is not there).
    pub(super) fn declared(&self, name: &str, member: bool) -> bool {
        const STANDARD: &[&str] = &[
            "_==_",
            "_!=_",
            "_<_",
            "_<=_",
            "_>_",
            "_>=_",
            "_&&_",
            "_||_",
            "!_",
            "_?_:_",
            "_+_",
            "_-_",
            "_*_",
            "_/_",
            "_%_",
            "-_",
            "_[_]",
            "@in",
            "@not_strictly_false",
            "size",
            "matches",
            "contains",
            "startsWith",
            "endsWith",
            "duration",
            "timestamp",
            "dyn",
            "int",
            "uint",
            "double",
            "string",
            "bool",
            "bytes",
            "type",
            "lowerAscii",
            "upperAscii",
            "trim",
            "substring",
            "indexOf",
            "lastIndexOf",
            "isSorted",
            "sum",
            "min",
            "max",
            "split",
            "replace",
            "join",
            "find",
            "findAll",
            "url",
        ];
        let probe = member.then_some(&Ty::Dyn);
        STANDARD.contains(&name)
            || library_function(name, probe, self.release.libraries).is_some()
            || self
                .overload_gate(name)
                .is_some_and(|since| self.release.libraries >= since)
    }

    /// The release a library function that `overload` types itself arrived in.
    fn overload_gate(&self, name: &str) -> Option<u32> {
        Some(match name {
            "quantity" | "isQuantity" => QUANTITY,
            "ip" | "isIP" | "cidr" | "isCIDR" | "ip.isCanonical" | "containsIP"
            | "containsCIDR" => IP,
            "semver" | "isSemver" => SEMVER,
            "sets.contains" | "sets.intersects" | "sets.equivalent" => SETS,
            _ => return None,
        })
    }

    /// Equality and ordering of strings traverse the shorter operand.
    pub(super) fn compare_cost(&self, a: &Node, b: &Node) -> Range {
        let smallest_max = self.size(a).max.min(self.size(b).max);
        Range {
            min: u64::from(smallest_max > 0),
            max: smallest_max,
        }
        .factor(STRING_TRAVERSAL)
    }

    fn add(&self, a: &Node, b: &Node) -> Option<(Ty, Range, Option<Range>)> {
        let (sa, sb) = (self.size(a), self.size(b));
        let size = Range {
            min: sa.min.saturating_add(sb.min),
            max: sa.max.saturating_add(sb.max),
        };
        match (&a.ty, &b.ty) {
            (Ty::String, Ty::String) | (Ty::Bytes, Ty::Bytes) => {
                Some((a.ty.clone(), size.factor(STRING_TRAVERSAL), Some(size)))
            }
            // With `dyn` every overload of `+` may apply: the most expensive (string
            // concatenation) prices it.
            (Ty::Dyn, Ty::String) | (Ty::String, Ty::Dyn) => {
                Some((Ty::String, size.factor(STRING_TRAVERSAL), Some(size)))
            }
            (Ty::Dyn, Ty::Dyn) => Some((
                Ty::Dyn,
                size.factor(STRING_TRAVERSAL).union(Range::exact(1)),
                Some(size),
            )),
            (Ty::List(x), Ty::List(y)) if x.ty.unifies(&y.ty) => {
                let ty = if matches!(x.ty, Ty::Dyn) {
                    b.ty.clone()
                } else {
                    a.ty.clone()
                };
                Some((ty, Range::exact(1), Some(size)))
            }
            (x, y) => arithmetic("_+_", x, y).map(|t| (t, Range::exact(1), None)),
        }
    }
}

fn is_string_like(t: &Ty) -> bool {
    matches!(t, Ty::String | Ty::Bytes)
}

fn is_number(t: &Ty) -> bool {
    matches!(t, Ty::Int | Ty::Uint | Ty::Double)
}

fn string_or_dyn(t: &Ty) -> bool {
    matches!(t, Ty::String | Ty::Dyn)
}

/// The longest and shortest results of `replace` (Kubernetes' `library/cost.go`): every
/// shortest match replaced by the longest replacement, and the other way round.
fn replaced_size(text: Range, from: Range, to: Range) -> Range {
    let grow = |n: u64| if n < u64::MAX { n + 1 } else { n };
    let (count_max, kept_max) = if from.min == 0 {
        (grow(text.max), text.max)
    } else if to.max <= from.min {
        (0, text.max)
    } else {
        ((text.max as f64 / from.min as f64).ceil() as u64, 0)
    };
    let (count_min, kept_min) = if from.max == 0 {
        (grow(text.min), text.min)
    } else if from.max <= to.min {
        (0, text.min)
    } else {
        ((text.min as f64 / from.max as f64).ceil() as u64, 0)
    };
    Range {
        min: count_min,
        max: count_max,
    }
    .multiply(to)
    .add(Range {
        min: kept_min,
        max: kept_max,
    })
}

/// `null` compares with objects, maps and lists (not with primitives).
fn null_comparison(a: &Ty, b: &Ty) -> bool {
    let nullable = |t: &Ty| matches!(t, Ty::Object(_) | Ty::Map(..) | Ty::List(_));
    matches!((a, b), (Ty::Null, t) | (t, Ty::Null) if nullable(t))
}

/// The standard arithmetic overloads.
fn arithmetic(op: &str, a: &Ty, b: &Ty) -> Option<Ty> {
    use Ty::*;
    match (op, a, b) {
        (_, Dyn, t) | (_, t, Dyn) => Some(if matches!(t, Dyn) { Dyn } else { t.clone() }),
        ("_+_" | "_-_" | "_*_" | "_/_", Int, Int) => Some(Int),
        ("_+_" | "_-_" | "_*_" | "_/_", Uint, Uint) => Some(Uint),
        ("_+_" | "_-_" | "_*_" | "_/_", Double, Double) => Some(Double),
        ("_%_", Int, Int) => Some(Int),
        ("_%_", Uint, Uint) => Some(Uint),
        ("_+_" | "_-_", Duration, Duration) => Some(Duration),
        ("_+_", Timestamp, Duration) | ("_+_", Duration, Timestamp) => Some(Timestamp),
        ("_-_", Timestamp, Duration) => Some(Timestamp),
        ("_-_", Timestamp, Timestamp) => Some(Duration),
        _ => None,
    }
}

// The Kubernetes release (the library set a new rule is compiled with) each library
// arrived in (k8s.io/apiserver `pkg/cel/environment/base.go`).
const CROSS_TYPE_NUMERIC: u32 = 28;
const QUANTITY: u32 = 28;
const OPTIONAL: u32 = 28;
const SETS: u32 = 29;
const STRINGS_V2: u32 = 29;
const IP: u32 = 30;
const FORMAT: u32 = 31;
/// Semver arrived in 1.33: a 1.33 server compiles new rules with the 1.32 set.
const SEMVER: u32 = 33;

/// The other functions of cel-go's standard library and Kubernetes' libraries: typed by
/// their result, at the default cost of 1 (their arguments are not type-checked here);
/// `None` for a function the release's library set does not have.
fn library_function(name: &str, target: Option<&Ty>, libraries: u32) -> Option<Ty> {
    use Ty::*;
    let since = |release: u32, ty: Ty| (libraries >= release).then_some(ty);
    match (name, target) {
        ("charAt", Some(String | Dyn)) => Some(String),
        ("format", Some(String | Dyn)) => since(STRINGS_V2, String),
        ("strings.quote", None) => since(STRINGS_V2, String),
        (
            "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
            | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            Some(Timestamp | Duration | Dyn),
        ) => Some(Int),
        ("getScheme" | "getHost" | "getHostname" | "getPort" | "getEscapedPath", Some(_)) => {
            Some(String)
        }
        ("getQuery", Some(_)) => Some(Dyn),
        ("isURL", None) => Some(Bool),
        ("isInteger" | "isGreaterThan" | "isLessThan", Some(Opaque("Quantity") | Dyn)) => {
            since(QUANTITY, Bool)
        }
        ("sign" | "asInteger" | "compareTo", Some(Opaque("Quantity") | Dyn)) => {
            since(QUANTITY, Int)
        }
        ("asApproximateFloat", Some(Opaque("Quantity") | Dyn)) => since(QUANTITY, Double),
        ("add" | "sub", Some(Opaque("Quantity") | Dyn)) => since(QUANTITY, Opaque("Quantity")),
        ("optional.of" | "optional.ofNonZeroValue" | "optional.none", None) => since(OPTIONAL, Dyn),
        ("hasValue", Some(_)) => since(OPTIONAL, Bool),
        ("value" | "orValue" | "or" | "optMap" | "optFlatMap", Some(_)) => since(OPTIONAL, Dyn),
        ("_?._" | "_[?_]", None) => since(OPTIONAL, Dyn),
        (
            "isUnspecified"
            | "isLoopback"
            | "isLinkLocalMulticast"
            | "isLinkLocalUnicast"
            | "isGlobalUnicast",
            Some(Opaque("IP") | Dyn),
        ) => since(IP, Bool),
        ("family", Some(Opaque("IP") | Dyn)) | ("prefixLength", Some(Opaque("CIDR") | Dyn)) => {
            since(IP, Int)
        }
        ("ip", Some(Opaque("CIDR") | Dyn)) => since(IP, Opaque("IP")),
        ("masked", Some(Opaque("CIDR") | Dyn)) => since(IP, Opaque("CIDR")),
        ("format.named", None) => since(FORMAT, Dyn),
        (f, None) if f.starts_with("format.") => since(FORMAT, Opaque("Format")),
        ("validate", Some(Opaque("Format") | Dyn)) => since(FORMAT, Dyn),
        ("major" | "minor" | "patch", Some(Opaque("Semver") | Dyn)) => since(SEMVER, Int),
        _ => None,
    }
}
