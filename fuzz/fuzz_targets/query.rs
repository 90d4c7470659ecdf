//! Any JSON as a Deta Base query (the `query` of `POST .../query`), matched against items: the
//! empty item, the input's own (`{"query": ..., "item": {...}}`) and, for each group of the
//! query, an item built to satisfy it. Asserts that parsing and matching never panic, and:
//! - a query that is neither `null` nor a list of objects is refused; `null` and `[]` match
//!   every item;
//! - a list is refused exactly when one of its conditions, alone, is refused;
//! - a query matches an item exactly when one of its groups does (OR), and a group exactly when
//!   each of its conditions does (AND); a query OR-ed with itself matches what it matched;
//! - `{f: v}` and `{"f?ne": v}` never agree on an item; on an item without the field, only
//!   `?ne` holds; where the field is there, `?contains` and `?not_contains` never agree, nor
//!   `?lt` and `?gte`, nor `?gt` and `?lte` when the field and the operand are both numbers or
//!   both strings;
//! - an item that holds, at each condition's dotted path, a value the operator asks for (the
//!   operand for `f`, `?lte`, `?gte`, `?pfx`; the range's start for `?r`; a smaller or larger
//!   number or string for `?lt` and `?gt`...) matches the query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

type Item = Map<String, Value>;

/// Groups and conditions looked at, at most: keeps each input cheap.
const MAX_GROUPS: usize = 8;
const MAX_CONDITIONS: usize = 16;

/// Every operator of the query language, by the name it is written with after `?`.
const OPERATORS: &[&str] = &[
    "ne",
    "lt",
    "gt",
    "lte",
    "gte",
    "pfx",
    "r",
    "contains",
    "not_contains",
];

fn matches(query: &Value, item: &Item) -> bool {
    micros::data::query_matches(query, item)
        .unwrap_or_else(|refused| panic!("{query} was refused ({refused}) where it parsed before"))
}

fn parses(query: &Value) -> bool {
    micros::data::query_matches(query, &Item::new()).is_ok()
}

/// A query of one condition.
fn single(field: &str, operand: &Value) -> Value {
    json!([{ field: operand }])
}

/// The field's path and operator name (`""` for equality), as the query language splits them:
/// at the last `?`.
fn split(field: &str) -> (&str, &str) {
    field.rsplit_once('?').unwrap_or((field, ""))
}

/// A value for which `path?operator: operand` holds, if there is an obvious one.
fn satisfying(operator: &str, operand: &Value) -> Option<Value> {
    let number = operand.as_f64();
    match operator {
        "" | "lte" | "gte" if operand.is_number() || operand.is_string() => Some(operand.clone()),
        "" => Some(operand.clone()),
        "ne" => Some(if operand.is_null() {
            json!(false)
        } else {
            Value::Null
        }),
        "pfx" => Some(operand.clone()),
        "lt" => match (number, operand.as_str()) {
            (Some(n), _) => {
                let below = if n > 0.0 {
                    n / 2.0
                } else if n == 0.0 {
                    -1.0
                } else {
                    n * 2.0
                };
                (below < n).then(|| serde_json::Number::from_f64(below).map(Value::Number))?
            }
            (None, Some(s)) if !s.is_empty() => Some(json!("")),
            _ => None,
        },
        "gt" => match (number, operand.as_str()) {
            (Some(n), _) => {
                let above = if n < 0.0 {
                    n / 2.0
                } else if n == 0.0 {
                    1.0
                } else {
                    n * 2.0
                };
                (above > n).then(|| serde_json::Number::from_f64(above).map(Value::Number))?
            }
            (None, Some(s)) => Some(Value::String(format!("{s}\0"))),
            _ => None,
        },
        "r" => {
            let [from, to] = operand.as_array()?.as_slice() else {
                return None;
            };
            let ordered = match (from, to) {
                (Value::Number(a), Value::Number(b)) => a.as_f64()? <= b.as_f64()?,
                (Value::String(a), Value::String(b)) => a <= b,
                _ => false,
            };
            ordered.then(|| from.clone())
        }
        "contains" => Some(match operand {
            Value::String(_) => operand.clone(),
            other => json!([other]),
        }),
        "not_contains" => Some(json!(true)),
        _ => None,
    }
}

/// An item satisfying every condition of `group`, if each has an obvious value and no two
/// conditions' paths overlap (one a prefix of the other, segment by segment).
fn witness(group: &Map<String, Value>) -> Option<Item> {
    let mut wanted: Vec<(Vec<&str>, Value)> = Vec::new();
    for (field, operand) in group {
        let (path, operator) = split(field);
        let operator = match operator {
            "<" => "lt",
            ">" => "gt",
            "<=" => "lte",
            ">=" => "gte",
            "!contains" => "not_contains",
            other => other,
        };
        let segments: Vec<&str> = path.split('.').collect();
        if wanted.iter().any(|(other, _)| {
            let shared = other.len().min(segments.len());
            other[..shared] == segments[..shared]
        }) {
            return None;
        }
        wanted.push((segments, satisfying(operator, operand)?));
    }
    let mut item = Item::new();
    for (segments, value) in wanted {
        let (last, parents) = segments.split_last()?;
        let mut object = &mut item;
        for parent in parents {
            object = object
                .entry(parent.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()?;
        }
        object.insert(last.to_string(), value);
    }
    Some(item)
}

/// The value at a dotted path, as an oracle apart from the matcher.
fn at<'a>(item: &'a Item, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut value = item.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn check(query: &Value, own_item: Option<&Item>) {
    let accepted = parses(query);
    let groups = match query {
        Value::Null => {
            assert!(accepted, "null was refused");
            assert!(
                matches(query, &Item::new()),
                "null did not match the empty item"
            );
            assert!(
                own_item.is_none_or(|item| matches(query, item)),
                "null did not match"
            );
            return;
        }
        Value::Array(groups) => groups,
        other => {
            assert!(!accepted, "{other} was accepted: a query is a list");
            return;
        }
    };
    let Some(groups) = groups
        .iter()
        .map(Value::as_object)
        .collect::<Option<Vec<&Map<String, Value>>>>()
    else {
        assert!(
            !accepted,
            "{query} was accepted with an entry that is not an object"
        );
        return;
    };
    let conditions: Vec<(&String, &Value)> = groups.iter().flat_map(|group| group.iter()).collect();
    let one_refused = conditions
        .iter()
        .any(|(field, operand)| !parses(&single(field, operand)));
    assert_eq!(
        accepted, !one_refused,
        "{query}: refused as a whole: {}, a condition refused alone: {one_refused}",
        !accepted
    );
    if !accepted {
        return;
    }

    let mut items: Vec<Item> = vec![Item::new()];
    items.extend(own_item.cloned());
    let witnesses: Vec<Option<Item>> = groups
        .iter()
        .take(MAX_GROUPS)
        .map(|group| witness(group))
        .collect();
    items.extend(witnesses.iter().flatten().cloned());

    let doubled: Value = groups
        .iter()
        .chain(&groups)
        .map(|group| Value::Object((*group).clone()))
        .collect();
    for item in &items {
        let matched = matches(query, item);
        if groups.is_empty() {
            assert!(matched, "[] did not match {item:?}");
        }
        if !groups.is_empty() && groups.len() <= MAX_GROUPS {
            let any = groups.iter().any(|group| matches(&json!([group]), item));
            assert_eq!(
                matched, any,
                "{query} on {item:?}: the query and its groups disagree"
            );
            for group in &groups {
                if group.len() > MAX_CONDITIONS {
                    continue;
                }
                let all = group
                    .iter()
                    .all(|(field, operand)| matches(&single(field, operand), item));
                assert_eq!(
                    matches(&json!([group]), item),
                    all,
                    "{group:?} on {item:?}: the group and its conditions disagree"
                );
            }
        }
        assert_eq!(
            matches(&doubled, item),
            matched,
            "{query} OR-ed with itself on {item:?}"
        );
    }

    for (field, operand) in conditions.iter().take(MAX_CONDITIONS) {
        let (path, _) = split(field);
        let with = |operator: &str, operand: &Value| single(&format!("{path}?{operator}"), operand);
        // Equality is written without `?`: a path with a `?` of its own cannot have it.
        if !path.contains('?') {
            for item in &items {
                assert_ne!(
                    matches(&single(path, operand), item),
                    matches(&with("ne", operand), item),
                    "`{path}` and `{path}?ne` agree on {operand} for {item:?}"
                );
            }
        }
        // On an item without the field, only `?ne` holds.
        for operator in OPERATORS {
            let operand = match *operator {
                "r" => json!([operand, operand]),
                "pfx" if !operand.is_string() => continue,
                _ => (*operand).clone(),
            };
            let query = with(operator, &operand);
            assert!(parses(&query), "{query} was refused");
            assert_eq!(
                matches(&query, &Item::new()),
                *operator == "ne",
                "{query} on an item without the field"
            );
        }
        // Where the field is there: operators and their complements never agree.
        for item in &items {
            let Some(value) = at(item, path) else {
                continue;
            };
            let holds = |operator: &str| matches(&with(operator, operand), item);
            assert_ne!(
                holds("contains"),
                holds("not_contains"),
                "`{path}?contains` and `?not_contains` agree on {operand} for {value}"
            );
            let comparable = matches!(
                (value, *operand),
                (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_))
            );
            if comparable {
                assert_ne!(
                    holds("lt"),
                    holds("gte"),
                    "`?lt` and `?gte`: {value} against {operand}"
                );
                assert_ne!(
                    holds("gt"),
                    holds("lte"),
                    "`?gt` and `?lte`: {value} against {operand}"
                );
            }
        }
    }

    for (group, witness) in groups.iter().zip(&witnesses) {
        if let Some(witness) = witness {
            assert!(
                matches(&json!([group]), witness),
                "{group:?} does not match {witness:?}, built for it"
            );
            assert!(
                matches(query, witness),
                "{query} does not match {witness:?}, built for one of its groups"
            );
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    // `{"query": ..., "item": {...}}` brings an item of its own; anything else is the query.
    match input
        .as_object()
        .and_then(|o| o.get("query").map(|q| (q, o.get("item"))))
    {
        Some((query, item)) => check(query, item.and_then(Value::as_object)),
        None => check(&input, None),
    }
});
