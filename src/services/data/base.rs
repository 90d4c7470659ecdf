//! Deta Base's operations over an [`ItemStore`]: put, get, insert, update, delete and query, with
//! Deta's request and response shapes, limits and status codes.

use serde_json::{Map, Value, json};

use super::query::{holds, parse_query};
use super::store::{Change, Item, ItemStore};

/// Items one put may carry (Deta's limit).
pub const MAX_PUT_ITEMS: usize = 25;
/// Bytes of one item, as JSON (Deta's limit: 400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Bytes of one request body to Base (Deta's limit: 16 MB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Items one query page holds at most, whatever its `limit` (Deta paged at 1,000).
pub const MAX_QUERY_LIMIT: usize = 1000;
/// Expired items removed after each write: a write pays for the space its expired
/// predecessors hold, a little at a time, and no sweeper is needed.
const PURGE_PER_WRITE: usize = 16;
/// Characters of a generated key: 12 lowercase letters and digits, as Deta's were.
const GENERATED_KEY_LEN: usize = 12;

/// An answer: a status and a JSON body.
pub(crate) type Answer = (u16, Value);

/// `{"errors": [message]}` with `status`.
pub(crate) fn error(status: u16, message: impl Into<String>) -> Answer {
    (status, json!({ "errors": [message.into()] }))
}

/// A 500 for a storage failure; the detail goes to the log only.
fn failed(error: &anyhow::Error) -> Answer {
    tracing::error!(error.type = "data", "base storage failed: {error:#}");
    error_answer()
}

fn error_answer() -> Answer {
    error(
        500,
        "the app's data could not be read or written; see the runtime's log",
    )
}

/// The current time in Unix seconds.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn generated_key() -> String {
    crate::settings::state::random_string(
        GENERATED_KEY_LEN,
        b"abcdefghijklmnopqrstuvwxyz0123456789",
    )
}

/// Checks an item to store and gives it a key if it has none.
pub(super) fn prepare(value: Value) -> Result<Item, String> {
    let Value::Object(mut item) = value else {
        return Err("an item must be a JSON object".into());
    };
    match item.get("key") {
        None | Some(Value::Null) => {
            item.insert("key".into(), Value::String(generated_key()));
        }
        Some(Value::String(key)) if key.is_empty() => {
            return Err("the key must not be empty".into());
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err("the key must be a string".into()),
    }
    if let Some(expires) = item.get("__expires")
        && !expires.is_i64()
        && !expires.is_u64()
    {
        return Err("`__expires` must be a Unix timestamp in seconds".into());
    }
    let size = serde_json::to_string(&item).map_or(usize::MAX, |s| s.len());
    if size > MAX_ITEM_BYTES {
        return Err(format!(
            "the item is {size} bytes, past the limit of {MAX_ITEM_BYTES}"
        ));
    }
    Ok(item)
}

/// `PUT /items`: `{"items": [...]}` → 207 `{"processed": {"items": [...]}, "failed": {"items": [...]}}`.
pub(crate) fn put(store: &dyn ItemStore, base: &str, body: &Value) -> Answer {
    let Some(items) = body.get("items").and_then(Value::as_array) else {
        return error(400, "the body must be {\"items\": [...]}");
    };
    if items.is_empty() {
        return error(400, "no items to put");
    }
    if items.len() > MAX_PUT_ITEMS {
        return error(
            400,
            format!("{} items in one put: at most {MAX_PUT_ITEMS}", items.len()),
        );
    }
    // As on Deta: a bad item refuses the whole put; an item with an empty attribute name is
    // only left out, under `failed`.
    let mut processed: Vec<Item> = Vec::new();
    let mut failed = Vec::new();
    for (index, value) in items.iter().enumerate() {
        if value.as_object().is_some_and(|item| item.contains_key("")) {
            failed.push(value.clone());
            continue;
        }
        match prepare(value.clone()) {
            Ok(item) => processed.push(item),
            Err(message) => return error(400, format!("item {index}: {message}")),
        }
    }
    let mut keys = std::collections::HashSet::new();
    if let Some(twice) = processed
        .iter()
        .filter_map(|item| item.get("key").and_then(Value::as_str))
        .find(|key| !keys.insert(*key))
    {
        return error(400, format!("key `{twice}` is in the put twice"));
    }
    if let Err(e) = store.put(base, &processed) {
        return self::failed(&e);
    }
    purge(store);
    (
        207,
        json!({ "processed": { "items": processed }, "failed": { "items": failed } }),
    )
}

/// Gives back the space of a few expired items; a failure here only delays that.
fn purge(store: &dyn ItemStore) {
    if let Err(error) = store.purge_expired(now(), PURGE_PER_WRITE) {
        tracing::warn!(error.type = "data", "expired items not purged: {error:#}");
    }
}

/// `GET /items/{key}` → 200 the item, 404 `{"key": key}`.
pub(crate) fn get(store: &dyn ItemStore, base: &str, key: &str) -> Answer {
    match store.get(base, key, now()) {
        Ok(Some(item)) => (200, Value::Object(item)),
        Ok(None) => (404, json!({ "key": key })),
        Err(e) => failed(&e),
    }
}

/// `DELETE /items/{key}` → 200 `{"key": key}`, whether it was there or not.
pub(crate) fn delete(store: &dyn ItemStore, base: &str, key: &str) -> Answer {
    match store.delete(base, key) {
        Ok(()) => (200, json!({ "key": key })),
        Err(e) => failed(&e),
    }
}

/// `POST /items`: `{"item": {...}}` → 201 the item, 409 if its key exists.
pub(crate) fn insert(store: &dyn ItemStore, base: &str, body: &Value) -> Answer {
    let Some(value) = body.get("item") else {
        return error(400, "the body must be {\"item\": {...}}");
    };
    let item = match prepare(value.clone()) {
        Ok(item) => item,
        Err(message) => return error(400, message),
    };
    let key = item
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let result = store.modify(base, &key, now(), &mut |current| match current {
        Some(_) => Change::Keep(Err((409, "Key already exists".to_string()))),
        None => Change::Write(item.clone(), Ok(item.clone())),
    });
    match result {
        Ok(Ok(item)) => {
            purge(store);
            (201, Value::Object(item))
        }
        Ok(Err((status, message))) => error(status, message),
        Err(e) => failed(&e),
    }
}

/// The operations of an update, checked.
struct Update {
    set: Map<String, Value>,
    increment: Map<String, Value>,
    append: Map<String, Value>,
    prepend: Map<String, Value>,
    delete: Vec<String>,
}

fn parse_update(body: &Value) -> Result<Update, String> {
    let Value::Object(body) = body else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(unknown) = body
        .keys()
        .find(|k| !["set", "increment", "append", "prepend", "delete"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown operation `{unknown}`: use set, increment, append, prepend or delete"
        ));
    }
    let map = |name: &str| -> Result<Map<String, Value>, String> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(format!("`{name}` must be an object of fields")),
        }
    };
    let update = Update {
        set: map("set")?,
        increment: map("increment")?,
        append: map("append")?,
        prepend: map("prepend")?,
        delete: match body.get("delete") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(fields)) => fields
                .iter()
                .map(|f| f.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("`delete` must be a list of field names")?,
            Some(_) => return Err("`delete` must be a list of field names".into()),
        },
    };
    if update.set.is_empty()
        && update.increment.is_empty()
        && update.append.is_empty()
        && update.prepend.is_empty()
        && update.delete.is_empty()
    {
        return Err("nothing to update: every operation is empty".into());
    }
    let mut seen = std::collections::HashSet::new();
    for field in update
        .set
        .keys()
        .chain(update.increment.keys())
        .chain(update.append.keys())
        .chain(update.prepend.keys())
        .chain(update.delete.iter())
    {
        if field == "key" || field.starts_with("key.") {
            return Err("the key of an item cannot be updated".into());
        }
        if !seen.insert(field.clone()) {
            return Err(format!("field `{field}` is in more than one operation"));
        }
    }
    for (field, value) in &update.increment {
        if !value.is_number() {
            return Err(format!("increment of `{field}` must be a number"));
        }
    }
    Ok(update)
}

/// The value at a dotted path (`profile.age`). With `create`, a missing last field is made
/// (as `null`); the fields before it must exist and be objects, as on Deta.
fn slot<'a>(item: &'a mut Item, path: &str, create: bool) -> Option<&'a mut Value> {
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut map = item;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        map = map.get_mut(part)?.as_object_mut()?;
    }
    if create && !map.contains_key(last) {
        map.insert(last.to_string(), Value::Null);
    }
    map.get_mut(last)
}

/// The error of an update whose field's parent is missing or not an object.
fn no_parent(field: &str) -> String {
    format!("`{field}`: a nested field needs its parent to exist and be an object")
}

fn remove(item: &mut Item, path: &str) {
    match path.rsplit_once('.') {
        None => {
            item.remove(path);
        }
        Some((parent, last)) => {
            if let Some(Value::Object(map)) = slot(item, parent, false) {
                map.remove(last);
            }
        }
    }
}

fn apply(item: &mut Item, update: &Update) -> Result<(), String> {
    for (field, value) in &update.set {
        *slot(item, field, true).ok_or_else(|| no_parent(field))? = value.clone();
    }
    for (field, by) in &update.increment {
        let target = slot(item, field, true).ok_or_else(|| no_parent(field))?;
        // A field that is not there yet counts from 0.
        let current = if target.is_null() {
            json!(0)
        } else {
            target.clone()
        };
        *target = match (current.as_i64(), by.as_i64()) {
            (Some(a), Some(b)) => a
                .checked_add(b)
                .map(Value::from)
                .ok_or(format!("increment of `{field}` overflows"))?,
            _ => match (current.as_f64(), by.as_f64()) {
                (Some(a), Some(b)) => json!(a + b),
                _ => {
                    return Err(format!(
                        "`{field}` is not a number: it cannot be incremented"
                    ));
                }
            },
        };
    }
    for (ops, front) in [(&update.append, false), (&update.prepend, true)] {
        for (field, value) in ops {
            let target = slot(item, field, true).ok_or_else(|| no_parent(field))?;
            // A list that is not there yet starts empty.
            if target.is_null() {
                *target = Value::Array(Vec::new());
            }
            let Value::Array(list) = target else {
                return Err(format!(
                    "`{field}` is not a list: nothing can be appended to it"
                ));
            };
            let added = match value {
                Value::Array(values) => values.clone(),
                other => vec![other.clone()],
            };
            if front {
                list.splice(0..0, added);
            } else {
                list.extend(added);
            }
        }
    }
    for field in &update.delete {
        remove(item, field);
    }
    Ok(())
}

/// `PATCH /items/{key}` → 200 the update with its key, 404 if the item does not exist.
pub(crate) fn update(store: &dyn ItemStore, base: &str, key: &str, body: &Value) -> Answer {
    let update = match parse_update(body) {
        Ok(update) => update,
        Err(message) => return error(400, message),
    };
    let result = store.modify(base, key, now(), &mut |current| {
        let Some(mut item) = current else {
            return Change::Keep(Err((404, "Key not found".to_string())));
        };
        if let Err(message) = apply(&mut item, &update) {
            return Change::Keep(Err((400, message)));
        }
        match prepare(Value::Object(item.clone())) {
            Ok(item) => Change::Write(item.clone(), Ok(item)),
            Err(message) => Change::Keep(Err((400, message))),
        }
    });
    match result {
        Ok(Ok(_)) => {
            purge(store);
            let mut answer = body.as_object().cloned().unwrap_or_default();
            answer.insert("key".into(), Value::String(key.to_string()));
            (200, Value::Object(answer))
        }
        Ok(Err((status, message))) => error(status, message),
        Err(e) => failed(&e),
    }
}

/// `POST /query`: `{"query": [...], "limit": N, "last": key, "sort": "desc"}` →
/// 200 `{"paging": {"size": n, "last": key}, "items": [...]}`; `last` is there only when more
/// items may follow.
pub(crate) fn query(store: &dyn ItemStore, base: &str, body: &Value) -> Answer {
    // Deta's SDKs show the first message (`Bad query`); the second says what is wrong.
    let bad = |detail: String| (400, json!({ "errors": ["Bad query", detail] }));
    let groups = match parse_query(body.get("query")) {
        Ok(groups) => groups,
        Err(message) => return bad(message),
    };
    let limit = match body.get("limit") {
        None | Some(Value::Null) => MAX_QUERY_LIMIT,
        Some(limit) => match limit.as_u64() {
            Some(n) if n >= 1 => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_QUERY_LIMIT),
            _ => return bad("`limit` must be a whole number of at least 1".into()),
        },
    };
    // The SDKs send `null` or `""` for "from the start" and "in key order".
    let last = match body.get("last") {
        None | Some(Value::Null) => None,
        Some(Value::String(last)) if last.is_empty() => None,
        Some(Value::String(last)) => Some(last.as_str()),
        Some(_) => return bad("`last` must be the key a previous page ended at".into()),
    };
    let descending = match body.get("sort") {
        None | Some(Value::Null) => false,
        Some(Value::String(sort)) if sort.is_empty() || sort == "asc" => false,
        Some(Value::String(sort)) if sort == "desc" => true,
        Some(other) => return bad(format!("`sort` is {other}: use \"asc\" or \"desc\"")),
    };
    let mut items = Vec::new();
    let mut more = false;
    let scanned = store.scan(base, last, descending, now(), &mut |item| {
        if !groups.is_empty() && !groups.iter().any(|all| all.iter().all(|c| holds(&item, c))) {
            return true;
        }
        if items.len() == limit {
            more = true;
            return false;
        }
        items.push(Value::Object(item));
        true
    });
    if let Err(e) = scanned {
        return failed(&e);
    }
    let mut paging = json!({ "size": items.len() });
    if more && let Some(last) = items.last().and_then(|i| i.get("key")) {
        paging["last"] = last.clone();
    }
    (200, json!({ "paging": paging, "items": items }))
}
