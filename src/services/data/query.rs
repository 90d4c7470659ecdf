//! Base's query language: a list of objects (OR) of conditions (AND), each a dotted field path,
//! an operator (`?ne`, `?lt`, `?pfx`, `?r`, `?contains`...) and an operand, as Deta defined it.

use std::cmp::Ordering;

use serde_json::Value;

use super::store::Item;

/// One condition of a query: a field (dotted path), an operator and its operand.
pub(super) struct Condition {
    path: String,
    op: Op,
    operand: Value,
}

/// A condition's operator; equality when the field has no `?op`.
#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Lte,
    Gte,
    Prefix,
    Range,
    Contains,
    NotContains,
}

pub(super) fn parse_query(query: Option<&Value>) -> Result<Vec<Vec<Condition>>, String> {
    let groups = match query {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(groups)) => groups,
        Some(_) => return Err("`query` must be a list of objects".into()),
    };
    groups
        .iter()
        .map(|group| {
            let Value::Object(fields) = group else {
                return Err("each entry of `query` must be an object".to_string());
            };
            fields
                .iter()
                .map(|(field, operand)| {
                    let (path, op) = match field.rsplit_once('?') {
                        None => (field.as_str(), Op::Eq),
                        Some((path, op)) => (
                            path,
                            match op {
                                "ne" => Op::Ne,
                                "lt" | "<" => Op::Lt,
                                "gt" | ">" => Op::Gt,
                                "lte" | "<=" => Op::Lte,
                                "gte" | ">=" => Op::Gte,
                                "pfx" => Op::Prefix,
                                "r" => Op::Range,
                                "contains" => Op::Contains,
                                "not_contains" | "!contains" => Op::NotContains,
                                other => {
                                    return Err(format!(
                                        "unknown operator `?{other}` in `{field}`"
                                    ));
                                }
                            },
                        ),
                    };
                    if path.is_empty() {
                        return Err(format!("`{field}` names no field"));
                    }
                    if matches!(op, Op::Range)
                        && operand.as_array().is_none_or(|range| range.len() != 2)
                    {
                        return Err(format!("`{field}` needs a range of two values: [from, to]"));
                    }
                    if matches!(op, Op::Prefix) && !operand.is_string() {
                        return Err(format!("`{field}` needs a string prefix"));
                    }
                    Ok(Condition {
                        path: path.to_string(),
                        op,
                        operand: operand.clone(),
                    })
                })
                .collect()
        })
        .collect()
}

/// Orders two JSON values of the same kind (numbers, strings); `None` across kinds.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn lookup<'a>(item: &'a Item, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = item.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn contains(value: Option<&Value>, operand: &Value) -> bool {
    match value {
        Some(Value::String(s)) => operand.as_str().is_some_and(|o| s.contains(o)),
        Some(Value::Array(list)) => list.contains(operand),
        _ => false,
    }
}

/// Whether `item` holds every condition of at least one group; a query of no groups matches
/// every item.
pub(super) fn matches(groups: &[Vec<Condition>], item: &Item) -> bool {
    groups.is_empty() || groups.iter().any(|all| all.iter().all(|c| holds(item, c)))
}

pub(super) fn holds(item: &Item, condition: &Condition) -> bool {
    let value = lookup(item, &condition.path);
    let operand = &condition.operand;
    let ordered = |want: &[Ordering]| {
        value
            .and_then(|v| compare(v, operand))
            .is_some_and(|o| want.contains(&o))
    };
    match condition.op {
        Op::Eq => value == Some(operand),
        Op::Ne => value != Some(operand),
        Op::Lt => ordered(&[Ordering::Less]),
        Op::Gt => ordered(&[Ordering::Greater]),
        Op::Lte => ordered(&[Ordering::Less, Ordering::Equal]),
        Op::Gte => ordered(&[Ordering::Greater, Ordering::Equal]),
        Op::Prefix => value
            .and_then(Value::as_str)
            .zip(operand.as_str())
            .is_some_and(|(v, p)| v.starts_with(p)),
        Op::Range => {
            let range = operand.as_array().map(Vec::as_slice).unwrap_or_default();
            value.is_some_and(|v| {
                compare(v, &range[0]).is_some_and(|o| o != Ordering::Less)
                    && compare(v, &range[1]).is_some_and(|o| o != Ordering::Greater)
            })
        }
        Op::Contains => contains(value, operand),
        Op::NotContains => value.is_some() && !contains(value, operand),
    }
}
