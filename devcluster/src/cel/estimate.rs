//! Type-checks one CEL rule against its schema's types and estimates its worst-case cost,
//! as kube-apiserver does when a CRD is registered: cel-go's checker and cost estimator
//! (`checker/cost.go`) with kube-apiserver's size estimator (sizes from the schema path)
//! and library costs (`k8s.io/apiserver/pkg/cel/library/cost.go`).
//!
//! Written by hand: `kube-cel`'s analysis module is a coarse heuristic (one list size for
//! every comprehension, no types), and the `cel` crate has no checker. Functions this
//! module does not model are typed `dyn` at cost 1 plus their arguments, as cel-go's
//! default O(1) estimate; see the dev cluster's known differences.

use std::rc::Rc;

use kube_cel::cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue,
};

use super::decl::{Decl, Ty, Typing};
use super::range::Range;

/// The namespaces of library functions (`sets.contains`, `optional.of`, …).
const NAMESPACES: &[&str] = &["sets", "optional", "format", "strings", "ip"];

const LIST_CREATE_BASE: u64 = 10;
const MAP_CREATE_BASE: u64 = 30;
const STRUCT_CREATE_BASE: u64 = 40;

/// What estimation knows of one expression.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub ty: Ty,
    pub cost: Range,
    /// cel-go's `ComputedSize`: literals, and results whose size a function reports.
    pub computed: Option<Range>,
    /// cel-go's field path (`self.spec.items`, `@items` for elements), which
    /// kube-apiserver's size estimator resolves against the schema.
    pub path: Option<Vec<String>>,
}

impl Node {
    fn new(ty: Ty, cost: Range) -> Node {
        Node {
            ty,
            cost,
            computed: None,
            path: None,
        }
    }
}

/// `path` extended by one step (cel-go appends to a missing path as to an empty one).
pub(super) fn extend(path: &Option<Vec<String>>, step: &str) -> Option<Vec<String>> {
    let mut p = path.clone().unwrap_or_default();
    p.push(step.to_string());
    Some(p)
}

/// Behaviour that differs between the Kubernetes releases the dev cluster can emulate.
#[derive(Clone, Copy, Debug)]
pub struct Release {
    /// cel-go sizes values of scalar types (bool, numbers, durations, timestamps) without a
    /// schema path as 1 from the cel-go of Kubernetes 1.25 on (and 1.24 patch releases);
    /// 1.24.0 priced `has(a) != has(b)` as unbounded.
    pub scalars_sized: bool,
    /// `has(x.f)` costs what `x` costs from Kubernetes 1.29 on (cel-go 0.17.7, with
    /// Kubernetes' `PresenceTestHasCost(false)`); before, nothing.
    pub has_costs_operand: bool,
    /// Calls report the size of their result (cel-go 0.12.5, Kubernetes 1.25).
    pub call_result_sizes: bool,
    /// A comprehension building a list is as long as its range (cel-go 0.17.8, 1.29).
    pub comprehension_sizes: bool,
    /// `dyn(x)` keeps the size of `x` (cel-go 0.23, Kubernetes 1.33).
    pub dyn_keeps_size: bool,
    /// The CEL libraries a new rule may use: kube-apiserver compiles a CRD being created
    /// with the library set of the release before its own (`DefaultCompatibilityVersion`).
    pub libraries: u32,
    pub typing: Typing,
}

impl Default for Release {
    fn default() -> Release {
        Release::of_minor(crate::DEFAULT_KUBERNETES_MINOR)
    }
}

impl Release {
    pub fn of_minor(minor: u32) -> Release {
        Release {
            scalars_sized: minor >= 25,
            has_costs_operand: minor >= 29,
            call_result_sizes: minor >= 25,
            comprehension_sizes: minor >= 29,
            dyn_keeps_size: minor >= 33,
            libraries: minor.saturating_sub(1).max(24),
            typing: Typing {
                enum_sized: minor >= 29,
            },
        }
    }
}

/// What checking an expression found: the type it yields, its cost, and whether it
/// reads `oldSelf` (a transition rule).
#[derive(Debug)]
pub struct Checked {
    pub ty: Ty,
    pub cost: Range,
    pub uses_old_self: bool,
}

/// How `oldSelf` is typed: as `self`, or (`optionalOldSelf: true`) as an optional of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OldSelf {
    Plain,
    Optional,
}

/// Type-checks an expression where `self` has the type `self_decl` and estimates its cost;
/// the checker's errors when it does not type-check.
pub fn estimate(
    expr: &IdedExpr,
    self_decl: &Rc<Decl>,
    old_self: OldSelf,
    release: Release,
) -> Result<Checked, Vec<String>> {
    let mut estimator = Estimator {
        root: self_decl.clone(),
        old_self,
        uses_old_self: false,
        scopes: Vec::new(),
        errors: Vec::new(),
        release,
    };
    let node = estimator.expr(expr);
    if !estimator.errors.is_empty() {
        return Err(estimator.errors);
    }
    Ok(Checked {
        ty: node.ty,
        cost: node.cost,
        uses_old_self: estimator.uses_old_self,
    })
}

/// A comprehension's variable: the iteration variable or the accumulator.
struct Scope {
    name: String,
    node: Node,
}

pub(super) struct Estimator {
    root: Rc<Decl>,
    old_self: OldSelf,
    uses_old_self: bool,
    scopes: Vec<Scope>,
    errors: Vec<String>,
    pub release: Release,
}

impl Estimator {
    fn error(&mut self, message: String) -> Node {
        self.errors.push(message);
        Node::new(Ty::Dyn, Range::exact(0))
    }

    /// `sizeEstimate`: a computed size, else the schema's bound for the path, else 1 for
    /// scalars, else unknown.
    pub(super) fn size(&self, n: &Node) -> Range {
        if let Some(c) = n.computed {
            return c;
        }
        if let Some(size) = n.path.as_deref().and_then(|p| self.path_size(p)) {
            return size;
        }
        if self.release.scalars_sized && n.ty.is_scalar() {
            return Range::exact(1);
        }
        Range::UNKNOWN_SIZE
    }

    /// The size of a list's elements (kube-apiserver's `listElementNode`): from the
    /// schema when the list has a path, else unknown.
    pub(super) fn element_size(&self, list: &Node) -> Range {
        list.path
            .as_ref()
            .and_then(|_| extend(&list.path, "@items"))
            .and_then(|p| self.path_size(&p))
            .unwrap_or(Range::UNKNOWN_SIZE)
    }

    /// kube-apiserver's `sizeEstimator.EstimateSize`: the path's first step (`self`,
    /// `oldSelf`, or whatever it starts with) is dropped and the rest walked from the
    /// rule's own schema node; a node it reaches is as large as its `MaxElements` (0 for
    /// scalars and objects).
    pub(super) fn path_size(&self, path: &[String]) -> Option<Range> {
        let (_, rest) = path.split_first()?;
        let mut node: &Decl = &self.root;
        for step in rest {
            node = match (step.as_str(), &node.ty) {
                ("@items" | "@values", Ty::List(e) | Ty::Map(_, e)) => e,
                ("@keys", Ty::Map(k, _)) => k,
                (field, Ty::Object(fields)) => fields.get(field)?,
                _ => return None,
            };
        }
        Some(Range {
            min: 0,
            max: node.max_elements,
        })
    }

    fn expr(&mut self, e: &IdedExpr) -> Node {
        match &e.expr {
            Expr::Literal(lit) => literal(lit),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(sel) => {
                let operand = self.expr(&sel.operand);
                self.select(operand, &sel.field, sel.test)
            }
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(list) => {
                let items: Vec<Node> = list.elements.iter().map(|i| self.expr(i)).collect();
                let elem = common_type(items.iter().map(|n| &n.ty));
                let cost = items
                    .iter()
                    .fold(Range::exact(LIST_CREATE_BASE), |c, n| c.add(n.cost));
                let mut node = Node::new(Ty::List(Rc::new(Decl::simple(elem, 1))), cost);
                node.computed = Some(Range::exact(items.len() as u64));
                node
            }
            Expr::Map(map) => {
                let mut cost = Range::exact(MAP_CREATE_BASE);
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        let (k, v) = (self.expr(&m.key), self.expr(&m.value));
                        cost = cost.add(k.cost).add(v.cost);
                        keys.push(k.ty);
                        values.push(v.ty);
                    }
                }
                let ty = Ty::Map(
                    Rc::new(Decl::simple(common_type(keys.iter()), 1)),
                    Rc::new(Decl::simple(common_type(values.iter()), 1)),
                );
                let mut node = Node::new(ty, cost);
                node.computed = Some(Range::exact(map.entries.len() as u64));
                node
            }
            Expr::Struct(s) => {
                let mut cost = Range::exact(STRUCT_CREATE_BASE);
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        cost = cost.add(self.expr(&f.value).cost);
                    }
                }
                self.error(format!(
                    "undeclared reference to '{}' (in container '')",
                    s.type_name
                ))
                .with_cost(cost)
            }
            Expr::Unspecified => Node::new(Ty::Dyn, Range::exact(0)),
        }
    }

    fn ident(&mut self, name: &str) -> Node {
        let one = Range::exact(1);
        if let Some(scope) = self.scopes.iter().rev().find(|s| s.name == name) {
            let mut node = scope.node.clone();
            node.cost = one;
            return node;
        }
        if name == "oldSelf" {
            self.uses_old_self = true;
        }
        let ty = match name {
            "self" => self.root.ty.clone(),
            "oldSelf" if self.old_self == OldSelf::Optional => Ty::Optional(self.root.clone()),
            "oldSelf" => self.root.ty.clone(),
            "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map"
            | "null_type" | "type" | "dyn" => Ty::Type,
            _ => {
                return self.error(format!(
                    "undeclared reference to '{name}' (in container '')"
                ));
            }
        };
        Node {
            ty,
            cost: one,
            computed: None,
            path: Some(vec![name.to_string()]),
        }
    }

    fn select(&mut self, operand: Node, field: &str, test: bool) -> Node {
        let ty = match &operand.ty {
            Ty::Object(fields) => match fields.get(field) {
                Some(d) => d.ty.clone(),
                None => return self.error(format!("undefined field '{field}'")),
            },
            Ty::Map(_, v) => v.ty.clone(),
            Ty::Dyn => Ty::Dyn,
            other => {
                return self.error(format!(
                    "type '{}' does not support field selection",
                    other.name()
                ));
            }
        };
        if test {
            let cost = if self.release.has_costs_operand {
                operand.cost
            } else {
                Range::exact(0)
            };
            return Node::new(Ty::Bool, cost);
        }
        let select_cost = match operand.ty {
            Ty::Object(_) | Ty::Map(..) => 1,
            _ => 0,
        };
        Node {
            ty,
            cost: operand.cost.add(Range::exact(select_cost)),
            computed: None,
            path: extend(&operand.path, field),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Node {
        let range = self.expr(&c.iter_range);
        let init = self.expr(&c.accu_init);
        let (iter_ty, step) = match &range.ty {
            Ty::List(e) => (e.ty.clone(), "@items"),
            Ty::Map(k, _) => (k.ty.clone(), "@keys"),
            Ty::Dyn => (Ty::Dyn, "@items"),
            other => {
                return self.error(format!(
                    "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                    other.name()
                ));
            }
        };
        let iter = Node {
            ty: iter_ty,
            cost: Range::exact(1),
            computed: None,
            path: extend(&range.path, step),
        };
        // The accumulator has no schema path: it is sized by its initial value.
        self.scopes.push(Scope {
            name: c.accu_var.clone(),
            node: init.clone(),
        });
        self.scopes.push(Scope {
            name: c.iter_var.clone(),
            node: iter,
        });
        let cond = self.expr(&c.loop_cond);
        let step = self.expr(&c.loop_step);
        self.scopes.pop();
        // The accumulator takes the type the step builds (`map` starts from `[]`).
        if let Some(accu) = self.scopes.last_mut() {
            accu.node.ty = step.ty.clone();
        }
        let result = self.expr(&c.result);
        self.scopes.pop();
        let count = self.size(&range);
        let cost = range
            .cost
            .add(init.cost)
            .add(result.cost)
            .add(count.multiply(step.cost.add(cond.cost)));
        // A list or map built per item (`map`, `filter`) is as long as the range (cel-go
        // 0.17.8, Kubernetes 1.29); a literal accumulator (`all`, `exists`) keeps its own.
        let computed = match c.accu_init.expr {
            Expr::List(_) | Expr::Map(_) if self.release.comprehension_sizes => Some(count),
            Expr::List(_) | Expr::Map(_) => None,
            _ => init.computed,
        };
        Node {
            ty: result.ty,
            cost,
            computed,
            path: None,
        }
    }

    fn call(&mut self, call: &CallExpr) -> Node {
        // `sets.contains(a, b)` parses as a method of an identifier `sets`: it is a
        // function of that namespace (unless a variable has the name).
        let namespaced = call.target.as_deref().and_then(|t| match &t.expr {
            Expr::Ident(ns)
                if NAMESPACES.contains(&ns.as_str())
                    && !self.scopes.iter().any(|s| &s.name == ns) =>
            {
                Some(format!("{ns}.{}", call.func_name))
            }
            _ => None,
        });
        let target = match namespaced {
            Some(_) => None,
            None => call.target.as_deref().map(|t| self.expr(t)),
        };
        let args: Vec<Node> = call.args.iter().map(|a| self.expr(a)).collect();
        let arg_sum = args.iter().fold(Range::exact(0), |c, a| c.add(a.cost));
        let target_cost = target.as_ref().map_or(Range::exact(0), |t| t.cost);
        let name = namespaced.as_deref().unwrap_or(&call.func_name);
        let Some((ty, function_cost, computed)) = self.overload(name, target.as_ref(), &args, call)
        else {
            if !self.declared(name, target.is_some()) {
                return self.error(format!(
                    "undeclared reference to '{name}' (in container '')"
                ));
            }
            let types: Vec<String> = target.iter().chain(&args).map(|n| n.ty.name()).collect();
            let message = if target.is_some() {
                format!(
                    "found no matching overload for '{name}' applied to '{}.({})'",
                    types[0],
                    types[1..].join(", ")
                )
            } else {
                format!(
                    "found no matching overload for '{name}' applied to '({})'",
                    types.join(", ")
                )
            };
            return self.error(message);
        };
        // `&&`, `||` and `?:` account for their arguments themselves.
        let cost = match name {
            "_&&_" | "_||_" | "_?_:_" => function_cost,
            _ => function_cost.add(arg_sum),
        };
        let mut node = Node::new(ty, cost.add(target_cost));
        // Before cel-go 0.12.5 (Kubernetes 1.25) no call reported the size of its result.
        node.computed = computed.filter(|_| self.release.call_result_sizes);
        if name == "_[_]"
            && let Some(container) = args.first()
        {
            let step = match container.ty {
                Ty::Map(..) => "@values",
                _ => "@items",
            };
            node.path = extend(&container.path, step);
        }
        node
    }
}

impl Node {
    fn with_cost(mut self, cost: Range) -> Node {
        self.cost = cost;
        self
    }
}

fn literal(lit: &LiteralValue) -> Node {
    let (ty, size) = match lit {
        LiteralValue::Boolean(_) => (Ty::Bool, 1),
        LiteralValue::Int(_) => (Ty::Int, 1),
        LiteralValue::UInt(_) => (Ty::Uint, 1),
        LiteralValue::Double(_) => (Ty::Double, 1),
        LiteralValue::Null => (Ty::Null, 1),
        LiteralValue::String(s) => (Ty::String, s.inner().chars().count() as u64),
        LiteralValue::Bytes(b) => (Ty::Bytes, b.inner().len() as u64),
    };
    Node {
        ty,
        cost: Range::exact(0),
        computed: Some(Range::exact(size)),
        path: None,
    }
}

/// The element type of a literal list or map: the common type, else `dyn`.
fn common_type<'a>(mut types: impl Iterator<Item = &'a Ty>) -> Ty {
    let Some(first) = types.next() else {
        return Ty::Dyn;
    };
    let first = first.clone();
    if types.all(|t| std::mem::discriminant(t) == std::mem::discriminant(&first)) {
        first
    } else {
        Ty::Dyn
    }
}
