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
                let cross_numeric = self.release.cross_type_numeric && is_number(a) && is_number(b);
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
            ("-_", None) if is(0, |t| matches!(t, Ty::Int | Ty::Double | Ty::Duration)) => {
                simple(args[0].ty.clone())
            }
            ("_[_]", None) if args.len() == 2 => {
                let ty = match (&args[0].ty, &args[1].ty) {
                    (Ty::List(e), Ty::Int | Ty::Uint | Ty::Dyn) => e.ty.clone(),
                    (Ty::Map(k, v), key) if k.ty.unifies(key) => v.ty.clone(),
                    (Ty::Dyn, _) => Ty::Dyn,
                    _ => return None,
                };
                simple(ty)
            }
            ("@in", None) if args.len() == 2 => {
                let ok = match &args[1].ty {
                    Ty::List(e) => e.ty.unifies(&args[0].ty),
                    Ty::Map(k, _) => k.ty.unifies(&args[0].ty),
                    Ty::Dyn => true,
                    _ => false,
                };
                ok.then(|| (Ty::Bool, self.size(&args[1]), None))
            }
            ("size", _) => {
                let subject = target.map(|t| &t.ty).or(arg(0))?;
                matches!(
                    subject,
                    Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..) | Ty::Dyn
                )
                .then(|| (Ty::Int, one, None))
            }
            ("matches", _) => {
                let (text, pattern) = match target {
                    Some(t) => (t, args.first()?),
                    None => (args.first()?, args.get(1)?),
                };
                if !(string_or_dyn(&text.ty) && string_or_dyn(&pattern.ty)) {
                    return None;
                }
                let text_cost = self
                    .size(text)
                    .add(Range::exact(1))
                    .factor(STRING_TRAVERSAL);
                let regex_cost = self.size(pattern).factor(REGEX_LENGTH);
                Some((Ty::Bool, text_cost.multiply(regex_cost), None))
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
                if matches!(t.ty, Ty::List(_)) =>
            {
                let Ty::List(elem) = &t.ty else { return None };
                let mut per_item = one;
                if is_string_like(&elem.ty) {
                    let item = Range {
                        min: 0,
                        max: t.schema.as_ref().map_or(u64::MAX, |_| elem.max_elements),
                    };
                    per_item = per_item.add(item.factor(STRING_TRAVERSAL));
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
                    Ty::List(e) => Range {
                        min: 0,
                        max: t.schema.as_ref().map_or(u64::MAX, |_| e.max_elements),
                    },
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
            ("sets.contains" | "sets.intersects" | "sets.equivalent", None) if args.len() == 2 => {
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
                | "isSemver",
                None,
            ) if args.len() == 1 && is(0, string_or_dyn) => {
                let ty = match name {
                    "url" => Ty::Opaque("URL"),
                    "quantity" => Ty::Opaque("Quantity"),
                    "ip" => Ty::Opaque("IP"),
                    "cidr" => Ty::Opaque("CIDR"),
                    "semver" => Ty::Opaque("Semver"),
                    _ => Ty::Bool,
                };
                Some((ty, self.size(&args[0]).factor(STRING_TRAVERSAL), None))
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
            // `dyn(x)` costs 1 and keeps the size of `x`.
            ("dyn", None) if args.len() == 1 => {
                let size = self.size(&args[0]);
                Some((Ty::Dyn, one, (size != Range::UNKNOWN_SIZE).then_some(size)))
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
                let cost = match (name, &args[0].ty) {
                    ("string", Ty::Bytes) | ("bytes", Ty::String) => {
                        self.size(&args[0]).factor(STRING_TRAVERSAL)
                    }
                    _ => one,
                };
                Some((ty, cost, None))
            }
            _ => known_function(name, target).then_some((Ty::Dyn, one, None)),
        }
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

/// Functions of cel-go's standard library and Kubernetes' CEL libraries this module does
/// not type precisely: accepted as `dyn`, at the default cost of 1.
fn known_function(name: &str, target: Option<&Node>) -> bool {
    const GLOBAL: &[&str] = &[
        "optional.of",
        "optional.ofNonZeroValue",
        "optional.none",
        "sets.contains",
        "sets.equivalent",
        "sets.intersects",
        "math.greatest",
        "math.least",
        "math.abs",
        "math.ceil",
        "math.floor",
        "math.round",
        "math.sign",
        "math.isNaN",
        "math.isInf",
        "math.isFinite",
        "format.named",
        "strings.quote",
        "base64.encode",
        "base64.decode",
        "isURL",
        "_?._",
        "_[?_]",
    ];
    const METHODS: &[&str] = &[
        "charAt",
        "format",
        "reverse",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
        "hasValue",
        "value",
        "orValue",
        "or",
        "optMap",
        "optFlatMap",
        "getScheme",
        "getHost",
        "getHostname",
        "getPort",
        "getEscapedPath",
        "getQuery",
        "sign",
        "isInteger",
        "asInteger",
        "asApproximateFloat",
        "isGreaterThan",
        "isLessThan",
        "compareTo",
        "add",
        "sub",
        "family",
        "isUnspecified",
        "isLoopback",
        "isLinkLocalMulticast",
        "isLinkLocalUnicast",
        "isGlobalUnicast",
        "containsIP",
        "containsCIDR",
        "masked",
        "prefixLength",
        "validate",
        "major",
        "minor",
        "patch",
        "distinct",
        "flatten",
        "slice",
        "sort",
        "sortBy",
        "first",
        "last",
        "all",
        "exists",
    ];
    match target {
        Some(_) => METHODS.contains(&name),
        None => GLOBAL.contains(&name),
    }
}
